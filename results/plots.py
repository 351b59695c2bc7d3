"""PNG plots of the curve tables: masking ratio (paper Figure 5), training schedule (Figure 7) and partial
fine-tuning (Figure 9).

matplotlib with the Agg backend; measured and paper-scale numbers are drawn in separate panels, never on one axis.
A paper point with no checked source carries the table's † in its legend entry.
"""
import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from .record import write_bytes_atomic  # noqa: E402
from .reference import UNVERIFIED_MARK, is_unverified  # noqa: E402


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def _curves(ax, cells, x_of, group_cols, title):
    """One line per group (mean, std as error bars); x from `x_of(cell)`, None = not on the line."""
    for key, g in cells.groupby(group_cols, sort=False):
        pts = sorted((x_of(c), c["value"], c["std"]) for _, c in g.iterrows() if x_of(c) is not None)
        if not pts:
            continue
        xs, ys, es = zip(*pts)
        es = [0.0 if e is None or e != e else e for e in es]
        label = " · ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        if any(c["kind"] == "reference" and is_unverified(c["verified"]) for _, c in g.iterrows()):
            label += f" {UNVERIFIED_MARK} unverified"
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")


def _blocks(cell):
    col = cell["column"]  # "K=4" (the MLP-only variant is not on the curve)
    return int(col[2:]) if col.startswith("K=") and col[2:].isdigit() else None


def plot_partial(table, path: Path) -> Path:
    """Figure 9: top-1 vs blocks fine-tuned; measured runs left, the paper's points right."""
    cells = table.cells
    panels = [(k, cells[cells["kind"] == k]) for k in ("measured", "reference")]
    panels = [(k, c) for k, c in panels if not c.empty]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (kind, c) in zip(axes[0], panels):
        title = "measured (data: see legend)" if kind == "measured" else "paper (ImageNet-1K, paper scale)"
        groups = ["model", "method", "data"] if kind == "measured" else ["model", "method"]
        _curves(ax, c, _blocks, groups, title)
        mlp = c[c["column"].str.endswith("(MLP)")]
        for _, cell in mlp.iterrows():  # Figure 9's "MLP only" variant: a lone marker at its K
            mark = f" {UNVERIFIED_MARK} unverified" if kind == "reference" and is_unverified(cell["verified"]) else ""
            ax.plot([int(cell["column"].split()[0][2:])], [cell["value"]], marker="x", color="k", linestyle="none",
                    label=f"{cell['model']} · {cell['method']} · MLP only{mark}")
        if not mlp.empty:
            ax.legend(fontsize=6, loc="best")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("# blocks fine-tuned (K)")
        ax.set_ylabel("top-1 (%)")
    return _save(fig, path)


def _setting_number(setting) -> float | None:
    """The knob's value in a row label: "mask ratio 75% (default)" -> 75.0, "800 epochs" -> 800.0."""
    m = re.search(r"\d+(?:\.\d+)?", str(setting))
    return float(m.group()) if m else None


def plot_knob(table, path: Path, xlabel: str, log_x: bool = False) -> Path:
    """Figures 5 and 7: top-1 vs the knob in the `setting` column, one line per protocol (fine-tune, linear
    probe) and model / data; measured runs left, the paper's points right."""
    cells = table.cells.assign(_x=table.cells["setting"].map(_setting_number))
    panels = [(k, cells[cells["kind"] == k]) for k in ("measured", "reference")]
    panels = [(k, c) for k, c in panels if not c.empty]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (kind, c) in zip(axes[0], panels):
        title = ("measured (data: see legend)" if kind == "measured" else
                 "paper (ImageNet-1K, paper scale): the points its text and tables state")
        _curves(ax, c, lambda cell: cell["_x"], ["column", "model", "data"] if kind == "measured" else
                ["column", "model"], title)
        if log_x:  # ticks at the schedules run, in plain numbers
            ax.set_xscale("log")
            xs = sorted(set(c["_x"].dropna()))
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("top-1 (%)")
    return _save(fig, path)


def plot_tables(tables, out_dir: str | Path) -> list[Path]:
    """The PNGs for the tables that are curves in the paper."""
    out, written = Path(out_dir), []
    for t in tables:
        if t.name == "fig9_partial":
            written.append(plot_partial(t, out / "fig9_partial.png"))
        elif t.name == "fig5_mask_ratio":
            written.append(plot_knob(t, out / "fig5_mask_ratio.png", "masking ratio (%)"))
        elif t.name == "fig7_pretrain_epochs":
            written.append(plot_knob(t, out / "fig7_pretrain_epochs.png", "pretraining epochs (log scale)", log_x=True))
    return written
