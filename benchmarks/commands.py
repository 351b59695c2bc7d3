"""What `mae-bench pretrain` and `mae-bench tables` do, given a loaded recipe: the CLI and the suite both call these
(`mae-bench run` is `benchmarks.tasks.run_task`)."""
import os
from pathlib import Path

from .config import resolved
from .run_folder import claim


def pretrain(cfg, data: str, out: str, resume: str | None = None) -> dict | None:
    """MAE pretraining into the run folder `out`; returns the final stats (rank 0)."""
    from mae_core.pretrain import pretrain as run

    main = int(os.environ.get("RANK", "0")) == 0
    plain = resolved(cfg)
    with claim(out, cfg, main):
        stats = run(plain, data, out, resume=resume, device=plain["runtime"]["device"])
    if main:
        print(f"done: final loss {stats.get('loss', float('nan')):.4f}; checkpoints, log.jsonl and "
              f"reconstructions.png in {out}")
    return stats


def tables(cfg, results: str | Path, out: str | Path, **options) -> list[Path]:
    """The paper's tables from every result.json under `results`, one table per registered task beside them;
    `options`: build_tables' ci, baseline and versus."""
    from results.tables import build_tables  # pandas only: works without torch

    from .tasks import TASKS
    written = build_tables(results, out, TASKS.values(), reference=cfg.reference, decimals=cfg.decimals,
                           show_reference=cfg.show_reference, plots=cfg.plots, **options)  # prints the tables (Markdown)
    print(f"wrote {len(written)} files to {out}")
    return written
