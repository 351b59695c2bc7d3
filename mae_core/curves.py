"""Per-epoch curves of a run's `log.jsonl` drawn as one PNG: a panel per metric, epochs on a shared x axis.

matplotlib's object API (a `Figure` with no pyplot, so no global backend or figure state), written atomically.
`results.plots` draws the tables' curves; this module sits in `mae_core`, below `results`, because a running
training draws it (pretraining's k-NN monitor, `transfer.classification.knn_monitor`).
"""
import json
from pathlib import Path

from .atomic import atomic_write


def epoch_records(log: Path) -> list[dict]:
    """The `"type": "epoch"` records of a log.jsonl in file order (a cut-off last line is skipped)."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("type") == "epoch":
            out.append(record)
    return out


def plot_epochs(records: list[dict], path: Path, panels: list[tuple[str, str]], title: str = "") -> Path:
    """One panel per (metric, axis label), top to bottom, each metric against its epoch (1-based, as the
    progress line counts) where a record has it; a metric with one point is drawn as a marker."""
    from matplotlib.figure import Figure  # matplotlib only when a run draws
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 2.2 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (metric, label) in zip(axes, panels):
        pts = [(r["epoch"] + 1, r[metric]) for r in records if isinstance(r.get(metric), (int, float))]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", markersize=3)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("epoch", fontsize=8)
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
