"""`mae-bench tables` recipes: the paper's tables from result files (results/tables.py)."""
from typing import Annotated

from benchmarks.recipe_schema import Path, Range, section


@section
class Recipe:
    reference: Path | None = None  # reference numbers CSV; None: results/reference/mae_reference.csv
    show_reference: bool = True  # False: measured rows only
    # digits after the point in measured cells (reference numbers are shown as written)
    decimals: Annotated[int, Range(0, 10)] = 1
    plots: bool = True  # fig5_mask_ratio.png, fig7_pretrain_epochs.png and fig9_partial.png
