"""The paper's reference numbers (`results/reference/mae_reference.csv`) as a frame aligned with measured runs."""
import re
from pathlib import Path

import pandas as pd

from .frame import arch_from_label
from .record import ResultError

REFERENCE_CSV = Path(__file__).parent / "reference" / "mae_reference.csv"
REFERENCE_COLUMNS = ("source", "table", "model", "pretrain", "task", "metric", "value", "verified", "notes")
# Optional columns (older files lack them): `variant` tells apart two numbers of one table cell, `setting` names
# the row of an ablation table or figure ("decoder depth 8", "mask ratio 75%").
OPTIONAL_COLUMNS = ("variant", "setting")
UNVERIFIED = "recalled (verify)"


UNVERIFIED_MARK = "†"  # beside a reference number with no checked source


def is_unverified(verified: str) -> bool:
    """A row with no checked source: its `verified` column is empty or says "recalled (verify)"."""
    text = "" if verified is None else str(verified)
    return not text.strip() or UNVERIFIED in text


def _init_kind(pretrain: str) -> str:
    text = pretrain.strip().lower()
    for kind in ("mae", "supervised", "scratch"):
        if text.startswith(kind):
            return kind
    return text


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """The reference CSV with parsed columns added: arch (timm-style), init, protocol, blocks, blocks_part,
    and `metric` reduced to the record's metric name (`top1@blocks=1(MLP only)` -> top1, blocks 1, mlp)."""
    path = Path(path) if path else REFERENCE_CSV
    try:
        ref = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ResultError(f"reference file not found: {path}") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ResultError(f"cannot read reference file {path}: {' '.join(str(e).split())}") from None
    missing = [c for c in REFERENCE_COLUMNS if c not in ref.columns]
    if missing:
        raise ResultError(f"reference file {path}: missing columns {', '.join(missing)}")
    for col in OPTIONAL_COLUMNS:
        if col not in ref.columns:
            ref[col] = ""
    rows = []
    for i, r in ref.iterrows():
        m = re.fullmatch(r"(\w+)(?:@blocks=(\d+)(\s*\(MLP only\))?)?", r["metric"].strip())
        try:
            value = float(r["value"])
        except ValueError:
            raise ResultError(f"reference file {path}, row {i + 2}: value {r['value']!r} is not a number") from None
        if not m:
            raise ResultError(f"reference file {path}, row {i + 2}: cannot parse metric {r['metric']!r}")
        task = r["task"].strip()
        rows.append({**r.to_dict(), "value": value, "value_text": r["value"].strip(), "metric": m.group(1),
                     "setting": r["setting"].strip(),
                     "metric_spec": r["metric"],
                     "arch": arch_from_label(r["model"]), "init": _init_kind(r["pretrain"]),
                     "protocol": task.split("_", 1)[1] if task.startswith("in1k_") else task,
                     "blocks": int(m.group(2)) if m.group(2) else None,
                     "blocks_part": ("mlp" if m.group(3) else "all") if m.group(2) else None,
                     "file": str(path), "row": i + 2})
    out = pd.DataFrame(rows)
    if not out.empty:  # object dtype: block counts stay ints, missing stays None
        out["blocks"] = pd.Series([r["blocks"] for r in rows], dtype=object, index=out.index)
    return out
