"""Every `result.json` under a folder as one pandas frame: one row per (run, metric), provenance kept.

Pure pandas (no torch). Malformed files are skipped with a one-line warning on stderr.
"""
import math
import re
import sys
from pathlib import Path

import pandas as pd

from mae_core.pretrain_knobs import PRETRAIN_AXES  # one list with mae_core.weights (torch-free)

from .record import RESULT_FILE, ResultError, read_result

# The paper's default pretraining setting (the gray entries of its Table 1 and its caption: unnormalized pixels,
# 800 epochs; the released models and Table 3 use normalized pixels and 1600 epochs).
PAPER_DEFAULTS = {"mask_ratio": 0.75, "mask_strategy": "random", "decoder_depth": 8, "decoder_embed_dim": 512,
                  "norm_pix_loss": False, "mask_tokens_in_encoder": False, "augment": "rrc", "pretrain_epochs": 800}

RUN_COLUMNS = ["file", "task", "protocol", "arch", "init", "ckpt", "sha256", "blocks", "blocks_part", "dataset",
               "root", "split", "subset", "images", "data", *PRETRAIN_AXES, "finished", "wall_s", "format",
               "init_method", "features"]
COLUMNS = [*RUN_COLUMNS, "metric", "value"]

ARCH_NAMES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}


def arch_label(arch: str) -> str:
    """`vit_base_patch16` -> `ViT-B/16` (the paper's spelling); other names unchanged."""
    m = re.fullmatch(r"vit_(tiny|small|base|large|huge)_patch(\d+)", str(arch))
    return f"ViT-{ARCH_NAMES[m.group(1)]}/{m.group(2)}" if m else str(arch)


def arch_from_label(label: str) -> str:
    """`ViT-B/16` -> `vit_base_patch16` (inverse of arch_label)."""
    m = re.fullmatch(r"ViT-(Ti|S|B|L|H)/(\d+)", label.strip())
    if not m:
        return label.strip()
    size = {v: k for k, v in ARCH_NAMES.items()}[m.group(1)]
    return f"vit_{size}_patch{m.group(2)}"


def features_label(features) -> str:
    """What the run's probe read (init.features, mae_core.feature_rules): `paper`, or `method:<rule>`."""
    if not isinstance(features, dict) or features.get("option") != "method":
        return "paper"
    return f"method:{features.get('rule')}"


def find_result_files(results_dir: str | Path) -> list[Path]:
    """Every `result.json` under `results_dir`, recursively, in a stable order."""
    root = Path(results_dir)
    if not root.exists():
        raise ResultError(f"results folder not found: {root}")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob(RESULT_FILE) if p.is_file())


def load_records(results_dir: str | Path, warn=None) -> list[tuple[Path, dict]]:
    """(path, record) for every readable result file; unreadable ones are reported through `warn` (one line
    each, default: stderr) and skipped. Raises ResultError when there were files but none was usable."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    files = find_result_files(results_dir)
    out = []
    for path in files:
        try:
            out.append((path, read_result(path)))
        except ResultError as e:
            warn(f"warning: skipping {' '.join(str(e).split())}")
    if files and not out:
        raise ResultError(f"none of the {len(files)} result files under {results_dir} is usable (see the warnings)")
    return out


def _pretrain_axis(pretrain, section: str, key: str):
    if not isinstance(pretrain, dict):
        return None
    node = pretrain.get(section)
    return node.get(key) if isinstance(node, dict) else None


def data_label(dataset: str, split, images, subset) -> str:
    """What a measured number was measured on: name/split, images evaluated, full set or subset N."""
    parts = [f"{dataset}/{split}" if split else str(dataset)]
    if images is not None and not (isinstance(images, float) and math.isnan(images)):
        parts.append(f"{int(images)} img")
    parts.append(f"subset {int(subset)}" if subset is not None and not pd.isna(subset) else "full")
    return " · ".join(parts)


def _norm_root(root):
    return str(Path(root)) if isinstance(root, str) and root else None


def label_roots(frame: pd.DataFrame) -> pd.DataFrame:
    """Where runs that share a data label were evaluated on different dataset roots (the record's `dataset.root`),
    the root joins their label, so a table pools only runs of the same evaluation data."""
    if frame.empty:
        return frame
    roots = frame.groupby("data", sort=False)["root"].agg(lambda r: r.fillna("?").nunique())
    mixed = frame["data"].map(roots) > 1
    frame = frame.copy()
    frame.loc[mixed, "data"] = frame.loc[mixed, "data"] + " · " + frame.loc[mixed, "root"].fillna("root not recorded")
    return frame


def run_row(path: Path, rec: dict, root: Path | None = None) -> dict:
    """One record flattened to the frame's run columns."""
    init, ds = rec["init"], rec["dataset"] if isinstance(rec["dataset"], dict) else {}
    images = next((ds[k] for k in ("val_images", "images", "num_images") if ds.get(k) is not None), None)
    try:
        shown = path.relative_to(root) if root is not None and root.is_dir() else path
    except ValueError:
        shown = path
    row = {"file": str(shown), "task": rec["task"], "protocol": rec["protocol"], "arch": rec["arch"],
           "init": init["kind"], "ckpt": init.get("ckpt"), "sha256": init.get("sha256"),
           "blocks": rec.get("blocks"),
           "blocks_part": rec.get("blocks_part") if rec.get("blocks") is not None else None,
           "dataset": ds.get("name"), "root": _norm_root(ds.get("root")), "split": ds.get("split"), "subset": ds.get("subset"), "images": images,
           "finished": rec.get("finished"), "wall_s": rec.get("wall_s"), "format": init.get("format"),
           "init_method": init.get("method") or init["kind"], "features": features_label(init.get("features"))}
    row["data"] = data_label(row["dataset"], row["split"], images, row["subset"])
    for col, (section, key) in PRETRAIN_AXES.items():
        row[col] = _pretrain_axis(init.get("pretrain"), section, key)
    return row


def records_frame(records: list[tuple[Path, dict]], root: str | Path | None = None) -> pd.DataFrame:
    """Long frame: one row per (run, metric) with the run's provenance columns (see COLUMNS)."""
    root = Path(root) if root is not None else None
    rows = []
    for path, rec in records:
        base = run_row(Path(path), rec, root)
        rows += [{**base, "metric": name, "value": float(value)} for name, value in rec["metrics"].items()]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("blocks", "subset", "images", *PRETRAIN_AXES):  # object dtype: ints stay ints, missing stays None
        frame[col] = pd.Series([r[col] for r in rows], dtype=object, index=frame.index)
    return frame


def load_frame(results_dir: str | Path, warn=None) -> pd.DataFrame:
    """`records_frame(load_records(results_dir))`, file paths relative to `results_dir`, runs of different dataset
    roots told apart in their data label (`label_roots`)."""
    return label_roots(records_frame(load_records(results_dir, warn), root=results_dir))


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run, metrics as columns (what `runs.csv` holds)."""
    if frame.empty:
        return pd.DataFrame(columns=RUN_COLUMNS)
    keyed = frame.assign(_run=frame["file"])
    wide = keyed.pivot(index="_run", columns="metric", values="value")
    runs = keyed.drop_duplicates("_run").set_index("_run")[RUN_COLUMNS]
    return runs.join(wide).reset_index(drop=True)
