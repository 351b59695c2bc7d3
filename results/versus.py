"""`mae-bench tables --baseline TABLE:ROW`: every other measured row of that table marked with its difference to
the baseline row and the paired bootstrap interval of it (results.compare on the cells' runs)."""
from pathlib import Path

import pandas as pd

from mae_core.errors import MaeBenchError

from .compare import compare, load_side
from .paired import LEVEL, RESAMPLES, SEED


def _rows_of(table, row: str) -> pd.Series:
    """The cells of the measured row named by its id (m1, m2, ...) or by one of its label cells (e.g. MAE)."""
    cells = table.cells
    measured = cells["kind"] == "measured"
    by_id = measured & (cells["id"] == row)
    if by_id.any():
        return by_id
    by_label = measured & cells[table.index].astype(str).eq(row).any(axis=1)
    ids = set(cells.loc[by_label, "id"])
    if len(ids) > 1:
        raise MaeBenchError(f"--baseline {table.name}:{row} names {len(ids)} rows ({', '.join(sorted(ids))}); "
                            "name one by its id")
    return by_label


def _runs(results_dir: Path, files: str) -> list[Path]:
    return [(results_dir / f).parent for f in files.split("; ")]


def mark_baseline(tables: list, spec: str, results_dir, resamples: int = RESAMPLES, seed: int = SEED,
                  level: float = LEVEL) -> None:
    """Add `diff`, `diff_low`, `diff_high` and the shown `versus` text to the cells of the table `spec` names
    ("TABLE:ROW"), each against the baseline row's cell of the same column; a cell whose runs cannot be paired
    with the baseline's (other images, no per-image evidence) says why in the table's notes."""
    if resamples < 1 or not 0 < level < 1:
        raise MaeBenchError(f"--resamples must be >= 1 and the level in (0, 1), got {resamples} and {level}")
    name, sep, row = spec.partition(":")
    table = next((t for t in tables if t.name == name), None)
    if not sep or table is None:
        shown = ", ".join(t.name for t in tables if (t.cells["kind"] == "measured").any())
        raise MaeBenchError(f"--baseline must be TABLE:ROW with a table of measured rows ({shown or 'none here'}), "
                            f"got {spec!r}")
    base = _rows_of(table, row)
    if not base.any():
        raise MaeBenchError(f"--baseline: table {name} has no measured row {row!r} (give its id, e.g. m1, or its label)")
    results_dir, cells = Path(results_dir), table.cells.copy()
    for col in ("diff", "diff_low", "diff_high", "versus"):
        cells[col] = pd.Series([None] * len(cells), dtype=object, index=cells.index)
    base_id = cells.loc[base, "id"].iloc[0]
    baseline = {c["column"]: c for _, c in cells[base].iterrows()}
    sides: dict = {}

    def side(files):
        if files not in sides:
            sides[files] = load_side(_runs(results_dir, files))
        return sides[files]

    notes = []
    for i, c in cells[(cells["kind"] == "measured") & ~base].iterrows():
        ref = baseline.get(c["column"])
        if ref is None:
            continue
        try:
            res = compare(side(c["files"]), side(ref["files"]), [c["metric"]], resamples, seed, level)[0]
        except MaeBenchError as e:
            cells.at[i, "versus"] = "Δ n/a"
            notes.append(f"{c['id']} · {c['column']} is not paired with the baseline: {e}")
            continue
        cells.at[i, "diff"], cells.at[i, "diff_low"], cells.at[i, "diff_high"] = res["diff"], res["low"], res["high"]
        cells.at[i, "versus"] = f"Δ {res['diff']:+.1f} [{res['low']:+.1f}, {res['high']:+.1f}]"
    cells.loc[base, "versus"] = "(baseline)"
    table.cells = cells
    label = " · ".join(str(v) for v in cells.loc[base, table.index].iloc[0])
    table.notes += [f"Δ [low, high]: a row's difference to the baseline row {base_id} ({label}) in the same column, "
                    f"with the {100 * level:g}% paired percentile bootstrap interval over the evaluation images "
                    f"(for seed groups: seeds, then images); {resamples} resamples, seed {seed} (mae-bench compare).",
                    *notes]
