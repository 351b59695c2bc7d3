"""`mae-bench visualize` recipes: Figure 2 style reconstruction pictures."""
from typing import Annotated

from benchmarks.recipe_schema import ImgSize, NonNegative, Positive, Range, section


@section
class Recipe:
    mask_ratio: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.75
    seed: NonNegative = 0
    num_images: Positive = 6
    img_size: ImgSize | None = None  # None: the checkpoint's pretraining size
