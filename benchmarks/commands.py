"""What `mae-bench tables` does, given a loaded recipe: the CLI, the suite and sweeps call it."""
from pathlib import Path


def tables(cfg, results: str | Path, out: str | Path, **options) -> list[Path]:
    """The paper's tables from every result.json under `results`, one table per registered task beside them;
    `options`: build_tables' ci, baseline and versus."""
    from results.tables import build_tables  # pandas only: works without torch

    from .tasks import downstream_tasks
    written = build_tables(results, out, downstream_tasks().values(), reference=cfg.reference, decimals=cfg.decimals,
                           show_reference=cfg.show_reference, plots=cfg.plots, **options)  # prints the tables (Markdown)
    print(f"wrote {len(written)} files to {out}")
    return written
