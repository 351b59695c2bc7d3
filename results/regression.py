"""Compare measured metrics with a checked-in baseline (e.g. `benchmarks/baselines/ci.json`).

Setting key: one string per (setting, metric), built from the record:

    <task>[/protocol=<protocol>][/blocks=<K>[-mlp]][/features=<rule>]/<init kind>/<arch>/<metric>

`protocol=` appears only when it is not the task's own (in1k_linear -> linear, in1k_partial -> partial,
in1k_finetune -> finetune, knn, coco_det, ade20k_seg -> themselves or det / seg); `blocks=` only for partial
fine-tuning (`-mlp` for the MLP-only variant); `features=` only for a run that read its method's own features
(`model.features=method`). Examples: `in1k_linear/mae/vit_tiny_patch16/top1`,
`in1k_partial/blocks=4/mae/vit_tiny_patch16/top1`, `coco_det/scratch/vit_tiny_patch16/bbox_AP`.
Duplicate runs of one setting are compared by their mean.

Baseline file: a JSON object `{"<setting key>": {"metric": "top1", "value": 52.0, "tolerance": 2.0}, ...}`
(optional per entry: `"higher_is_better": false`, a JSON bool; other fields such as `runs` and `data` are informational;
top-level keys starting with `_` are comments). A metric regressed when value < baseline - tolerance (or
value > baseline + tolerance for a lower-is-better metric); a baseline setting with no measured value is
reported as missing. A duplicate key is refused, and so is a baseline that compares nothing for the runs at hand (no
setting of their tasks and inits): a check that compared nothing would pass. Pure Python + pandas; no torch.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .frame import records_frame
from .record import ResultError, read_json, write_json_atomic


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def setting_key(task: str, protocol: str, init: str, arch: str, metric: str, blocks=None,
                blocks_part=None, features=None) -> str:
    """The documented key (module docstring) of one metric of one setting; `features` (frame column: `paper` or
    `method:<rule>`) adds `features=<rule>` for a run that read its method's own features."""
    parts = [task]
    if protocol not in (task, task.split("_", 1)[-1]):
        parts.append(f"protocol={protocol}")
    if protocol == "partial" and not _missing(blocks):
        parts.append(f"blocks={int(blocks)}" + ("-mlp" if blocks_part == "mlp" else ""))
    if isinstance(features, str) and features.startswith("method:"):
        parts.append(f"features={features[len('method:'):]}")
    return "/".join([*parts, init, arch, metric])


def key_task_init(key: str) -> tuple[str, str]:
    """The task and the init of a setting key (its first part and its third from last)."""
    parts = key.split("/")
    return parts[0], parts[-3]


def scope_baseline(baseline: dict, tasks=None, inits=None) -> dict:
    """The baseline's settings of the given tasks and inits (None: any): a run of fewer inits or tasks is checked on
    those, and a setting inside the scope that it did not run still counts as missing."""
    return {k: v for k, v in baseline.items()
            if (tasks is None or key_task_init(k)[0] in tasks) and (inits is None or key_task_init(k)[1] in inits)}


def checked_scope(baseline: dict, tasks, inits, known_tasks, where: str = "baseline") -> dict:
    """`scope_baseline`, refusing a key of a task that is not registered (a wrong-case name would be skipped
    silently) and a scope with nothing in it (the check would pass having compared nothing)."""
    for key in baseline:
        if key_task_init(key)[0] not in known_tasks:
            raise ResultError(f"{where}: {key}: unknown task {key_task_init(key)[0]!r} (tasks: {', '.join(known_tasks)})")
    scoped = scope_baseline(baseline, tasks, inits)
    if not scoped:
        raise ResultError(f"{where} compares nothing: none of its {len(baseline)} settings is of the tasks "
                          f"({', '.join(tasks)}) and inits ({', '.join(inits)}) run here")
    return scoped


def _as_frame(measured) -> pd.DataFrame:
    """A records frame from a frame, a list of records, or a list of (path, record) pairs."""
    if isinstance(measured, pd.DataFrame):
        return measured
    pairs = [m if isinstance(m, tuple) else (Path(f"<record {i}>"), m) for i, m in enumerate(measured)]
    return records_frame(pairs)


def measured_values(measured) -> pd.DataFrame:
    """Per setting key: task, metric, mean value, run count and the data it was measured on (index: key)."""
    f = _as_frame(measured)
    if f.empty:
        return pd.DataFrame(columns=["task", "metric", "value", "runs", "data"])
    keys = [setting_key(r.task, r.protocol, r.init, r.arch, r.metric, r.blocks, r.blocks_part, r.features)
            for r in f.itertuples()]
    g = f.assign(key=keys).groupby("key", sort=True)
    return g.agg(task=("task", "first"), metric=("metric", "first"), value=("value", "mean"), runs=("value", "size"),
                 std=("value", "std"), data=("data", lambda d: "; ".join(sorted(set(d)))))


def spread_tolerance(std: float, runs: int, sigmas: float, floor: float) -> float:
    """The drop a single new run may show: `sigmas` standard deviations of (new run - mean of `runs` runs), i.e.
    sigmas * std * sqrt(1 + 1/runs), with `std` the runs' sample std (seed-to-seed spread); at least `floor`."""
    return max(float(floor), float(sigmas) * float(std) * math.sqrt(1 + 1 / runs))


@dataclass(frozen=True)
class Regression:
    """One metric below its baseline by more than the tolerance (value None: no result for the setting)."""
    setting: str
    metric: str
    value: float | None
    baseline: float
    tolerance: float
    higher_is_better: bool = True

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.setting}: no result for {self.metric} (baseline {self.baseline:.2f})"
        op, sign = ("<", "-") if self.higher_is_better else (">", "+")
        return (f"{self.setting}: {self.metric} {self.value:.2f} {op} baseline {self.baseline:.2f} {sign} "
                f"tolerance {self.tolerance:.2f}")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_baseline(baseline: dict, where: str = "baseline") -> dict:
    """Check the baseline's shape; returns it without the `_comment` keys."""
    if not isinstance(baseline, dict):
        raise ResultError(f"{where}: not a JSON object of setting keys")
    out = {}
    for key, entry in baseline.items():
        if key.startswith("_"):
            continue
        if len(key.split("/")) < 4:
            raise ResultError(f"{where}: {key}: not a setting key (<task>/.../<init>/<arch>/<metric>)")
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
            raise ResultError(f"{where}: {key}: needs an object with metric, value and tolerance")
        if not _number(entry.get("value")) or not _number(entry.get("tolerance")) or entry["tolerance"] < 0:
            raise ResultError(f"{where}: {key}: value and tolerance must be finite numbers (tolerance >= 0)")
        if not key.endswith("/" + entry["metric"]):
            raise ResultError(f"{where}: {key}: the key's last part must be its metric {entry['metric']!r}")
        if not isinstance(entry.get("higher_is_better", True), bool):  # "no" would read as true
            raise ResultError(f"{where}: {key}: higher_is_better must be true or false, got "
                              f"{entry['higher_is_better']!r}")
        out[key] = entry
    return out


def load_baseline(path: str | Path) -> dict:
    """Read and check a baseline file."""
    return validate_baseline(read_json(path, "baseline file"), str(path))


def find_regressions(measured, baseline: dict | str | Path, *, missing_ok: bool = False) -> list[Regression]:
    """Every baseline metric the measured runs fall short of by more than its tolerance, in key order.
    `measured`: records, (path, record) pairs or a records frame; `baseline`: a dict or a baseline file.
    Settings with no measured value count as regressions (value None) unless `missing_ok`. A baseline with no
    setting (`{}`, comments only) is refused: the check would pass having compared nothing."""
    base = load_baseline(baseline) if isinstance(baseline, (str, Path)) else validate_baseline(baseline)
    if not base:
        raise ResultError(f"baseline {baseline if isinstance(baseline, (str, Path)) else ''} compares nothing: "
                          "it holds no setting".replace("  ", " "))
    values = measured_values(measured)
    if missing_ok and not set(base) & set(values.index):
        raise ResultError(f"the baseline compares nothing: none of its {len(base)} settings was measured")
    out = []
    for key in sorted(base):
        entry = base[key]
        higher = entry.get("higher_is_better", True)
        ref, tol = float(entry["value"]), float(entry["tolerance"])
        if key not in values.index:
            if not missing_ok:
                out.append(Regression(key, entry["metric"], None, ref, tol, higher))
            continue
        value = float(values.at[key, "value"])
        if (value < ref - tol) if higher else (value > ref + tol):
            out.append(Regression(key, entry["metric"], value, ref, tol, higher))
    return out


def make_baseline(measured, tolerance: float | dict, metrics: dict | None, sigmas: float | None = None) -> dict:
    """A baseline from measured runs: each setting's mean value with `tolerance` (a number, or a dict
    metric -> number). With `sigmas`, each setting's tolerance comes from its own seed spread instead
    (`spread_tolerance`, `tolerance` then the floor; every setting needs >= 2 runs). `metrics`: which
    metrics to keep per task (task -> names, as `benchmarks.tasks.primary_metrics()`; None: all)."""
    values = measured_values(measured)
    out = {}
    for key, row in values.iterrows():
        if metrics is not None and row["metric"] not in metrics.get(row["task"], ()):
            continue
        tol = tolerance.get(row["metric"]) if isinstance(tolerance, dict) else tolerance
        if not _number(tol) or tol < 0:
            raise ResultError(f"tolerance for {row['metric']} must be a number >= 0, got {tol!r}")
        entry = {"metric": row["metric"], "value": round(float(row["value"]), 4), "tolerance": float(tol),
                 "runs": int(row["runs"]), "data": row["data"]}
        if sigmas is not None:
            if row["runs"] < 2:
                raise ResultError(f"{key}: a tolerance from the seed spread needs >= 2 runs, found {row['runs']}")
            entry["std"] = round(float(row["std"]), 4)
            entry["tolerance"] = round(spread_tolerance(row["std"], int(row["runs"]), sigmas, tol), 4)
        out[key] = entry
    return out


def write_baseline(measured, path: str | Path, tolerance: float | dict, metrics: dict | None,
                   sigmas: float | None = None) -> Path:
    """`make_baseline` written atomically as JSON to `path`."""
    baseline = make_baseline(measured, tolerance, metrics, sigmas)
    if not baseline:
        raise ResultError("no measured metrics to write a baseline from")
    return write_json_atomic(path, baseline)
