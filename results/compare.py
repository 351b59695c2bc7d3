"""`mae-bench compare A B`: two runs (or seed groups) scored on the same evaluation images, compared paired.

A side is a run folder, a folder of runs (a seed group: every result.json below it, e.g. RUN/seed_0, RUN/seed_1),
or several such paths. Each run's per-image evidence (results.evidence) must reproduce its own result.json metric,
and every run of both sides must have scored the same images; then each metric's difference A - B gets a paired
percentile bootstrap interval (results.paired) and top-1 of two single runs McNemar's exact p. No torch.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mae_core.errors import MaeBenchError

from . import evidence
from .paired import LEVEL, RESAMPLES, SEED, CocoAP, SegMetric, TopK, mcnemar, paired_bootstrap
from .record import RESULT_FILE, ResultError, read_result, sha256_file

METRIC_LABEL = {"top1": "top-1", "top5": "top-5", "mIoU": "mIoU", "bbox_AP": "APbox", "segm_AP": "APmask"}
REPRODUCE_TOL = 1e-6  # points: the evidence's metric against result.json's (equal but for JSON rounding)


def run_folders(path) -> list[Path]:
    """The run folders a side names: RUN itself when it holds result.json, else every run below it."""
    path = Path(path)
    if (path / RESULT_FILE).is_file():
        return [path]
    if not path.is_dir():
        raise MaeBenchError(f"no such run folder: {path}")
    runs = sorted(p.parent for p in path.rglob(RESULT_FILE) if p.is_file())
    if not runs:
        raise MaeBenchError(f"no result.json in or below {path}")
    return runs


def kind_of(run: Path) -> str:
    """Which evidence a run wrote: classification, segmentation or detection."""
    for kind, name in (("classification", evidence.PREDICTIONS_FILE), ("segmentation", evidence.SEG_COUNTS_FILE),
                       ("detection", evidence.COCO_EVAL_FILE)):
        if (run / name).is_file():
            return kind
    raise MaeBenchError(f"{run} holds no per-image evidence ({evidence.PREDICTIONS_FILE}, {evidence.SEG_COUNTS_FILE} "
                        f"or {evidence.COCO_EVAL_FILE}); runs made before mae-bench wrote it cannot be compared")


@dataclass
class Run:
    """One run's record and its scorers, metric -> scorer (all over the same sorted image ids)."""
    path: Path
    record: dict
    kind: str
    scorers: dict = field(default_factory=dict)
    labels: np.ndarray | None = None  # classification: to check both sides scored the same labels

    @property
    def ids(self) -> list[str]:
        return next(iter(self.scorers.values())).ids


_COCO_CACHE: dict = {}


def _coco(ann_file: str):
    from results.coco_file import load_coco  # pycocotools, no torch
    if ann_file not in _COCO_CACHE:
        _COCO_CACHE[ann_file] = load_coco(Path(ann_file))
    return _COCO_CACHE[ann_file]


def load_run(path: Path) -> Run:
    """A run's record and evidence; its evidence must reproduce the record's metrics."""
    try:
        rec = read_result(path)
    except ResultError as e:
        raise MaeBenchError(str(e)) from None
    run = Run(path, rec, kind_of(path))
    if run.kind == "classification":
        ids, labels, top5 = evidence.read_predictions(path)
        run.labels = labels
        run.scorers = {"top1": TopK(ids, labels, top5, 1), "top5": TopK(ids, labels, top5, 5)}
    elif run.kind == "segmentation":
        k = rec["dataset"].get("num_classes")
        if not isinstance(k, int):
            raise MaeBenchError(f"{path / RESULT_FILE}: dataset.num_classes is missing")
        ids, counts = evidence.read_seg_counts(path, k)
        run.scorers = {"mIoU": SegMetric(ids, counts, "mIoU")}
    else:
        meta = evidence.read_coco_eval(path)
        dets = _read_json(path / "coco_instances_results.json")
        gt = _coco(meta["annotation_file"])
        run.scorers = {f"{t}_AP": CocoAP(gt, dets, meta["image_ids"], t) for t in ("bbox", "segm")
                       if f"{t}_AP" in rec["metrics"]}
    for metric, scorer in run.scorers.items():
        if metric in rec["metrics"] and abs(scorer.full() - rec["metrics"][metric]) > REPRODUCE_TOL:
            raise MaeBenchError(f"{path}: its per-image evidence gives {metric} {scorer.full():.4f}, its result.json "
                                f"{rec['metrics'][metric]:.4f}; the files do not belong together")
    return run


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MaeBenchError(f"{path.name} not found in {path.parent}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MaeBenchError(f"cannot read {path}: {e}") from None


def load_side(paths) -> list[Run]:
    """Every run a side names (a path or a list of paths), loaded."""
    return [load_run(r) for p in ([paths] if isinstance(paths, (str, Path)) else paths) for r in run_folders(p)]


def _what(run: Run) -> tuple:
    rec = run.record
    return rec["task"], rec["protocol"], rec.get("blocks")


def _setting(run: Run) -> str:
    return "/".join(str(x) for x in _what(run) if x is not None)


def check_comparable(a: list[Run], b: list[Run]) -> None:
    """One line and no comparison unless each side is one setting (task, protocol, blocks: its seeds), both sides
    wrote the same kind of evidence, and every run scored the same images (and labels). The two sides may be
    different protocols on one evaluation set, e.g. the linear probe against fine-tuning, or K = 0 against K = 4."""
    first = a[0]
    for side in (a, b):
        other = next((r for r in side if _what(r) != _what(side[0])), None)
        if other is not None:
            raise MaeBenchError(f"{side[0].path} is {_setting(side[0])} but {other.path} is {_setting(other)}: the "
                                "runs of one side must be seeds of one setting")
    for run in (*a, *b):
        if run.kind != first.kind:
            raise MaeBenchError(f"{first.path} is {first.kind} ({_setting(first)}) but {run.path} is {run.kind} "
                                f"({_setting(run)}); compare runs of one kind of task")
        if run.ids != first.ids:
            only_first, only_run = sorted(set(first.ids) - set(run.ids)), sorted(set(run.ids) - set(first.ids))
            example = (only_first or only_run)[:1]
            raise MaeBenchError(f"{first.path} and {run.path} scored different evaluation images ({len(first.ids)} vs "
                                f"{len(run.ids)}; {len(only_first)} only in the first, {len(only_run)} only in the "
                                f"second, e.g. {example[0] if example else '(same ids, other order)'}); compare "
                                "runs on the same evaluation set")
        if first.kind == "classification" and not np.array_equal(run.labels, first.labels):
            raise MaeBenchError(f"{first.path} and {run.path} give the same images different labels "
                                f"({int((run.labels != first.labels).sum())} differ); their class lists differ")
        if first.kind == "detection":
            files = {r.record["dataset"].get("root") for r in (first, run)}
            ann = [evidence.read_coco_eval(r.path)["annotation_file"] for r in (first, run)]
            if ann[0] != ann[1] and sha256_file(ann[0]) != sha256_file(ann[1]):
                raise MaeBenchError(f"{first.path} and {run.path} were scored against different annotation files "
                                    f"({ann[0]} vs {ann[1]}; roots {', '.join(sorted(map(str, files)))})")


def compare(a: list[Run], b: list[Run], metrics=None, resamples: int = RESAMPLES, seed: int = SEED,
            level: float = LEVEL) -> list[dict]:
    """One dict per metric: a, b, diff, low, high (the paired bootstrap) and, for top-1 of two single runs,
    McNemar's only_a, only_b and p."""
    check_comparable(a, b)
    names = [m for m in a[0].scorers if all(m in r.scorers for r in (*a, *b))]
    if metrics:
        unknown = [m for m in metrics if m not in names]
        if unknown:
            raise MaeBenchError(f"these runs have no per-image {', '.join(unknown)}; they have {', '.join(names)}")
        names = list(metrics)
    out = []
    for m in names:
        res = paired_bootstrap([r.scorers[m] for r in a], [r.scorers[m] for r in b], resamples, seed, level)
        res.pop("replicates")
        res["metric"] = m
        if m == "top1" and len(a) == len(b) == 1:
            res["mcnemar"] = mcnemar(a[0].scorers[m].correct, b[0].scorers[m].correct)
        out.append(res)
    return out


def _side_text(runs: list[Run], given) -> str:
    shown = ", ".join(map(str, given if not isinstance(given, (str, Path)) else [given]))
    return f"{shown} ({len(runs)} run{'s' if len(runs) > 1 else ''})"


def _label(run: Run) -> str:
    """in1k_linear, in1k_partial (blocks 4), knn: the task and what else sets it apart."""
    task, _, blocks = _what(run)
    return task + (f" (blocks {blocks})" if blocks is not None else "")


def report(rows: list[dict], a: list[Run], b: list[Run], given_a, given_b) -> str:
    """The comparison as a few lines of text."""
    ds = a[0].record["dataset"]
    same = _what(a[0]) == _what(b[0])
    lines = [f"{_label(a[0]) if same else _label(a[0]) + ' vs ' + _label(b[0])} on {rows[0]['images']} images "
             f"({ds.get('name')}/{ds.get('split')})",
             f"A = {_side_text(a, given_a)}", f"B = {_side_text(b, given_b)}"]
    pct = f"{100 * rows[0]['level']:g}%"
    head = f"{'metric':<8} {'A':>7} {'B':>7} {'A - B':>7}  {pct + ' interval':<18} McNemar p"
    lines += ["", head]
    for r in rows:
        mc = r.get("mcnemar")
        p = f"{mc['p']:.3g} ({mc['only_a']} right only in A, {mc['only_b']} only in B)" if mc else "-"
        interval = f"[{r['low']:+.2f}, {r['high']:+.2f}]"
        lines.append(f"{METRIC_LABEL.get(r['metric'], r['metric']):<8} {r['a']:7.2f} {r['b']:7.2f} {r['diff']:+7.2f}  "
                     f"{interval:<18} {p}")
    seeds = "seeds, then images" if max(len(a), len(b)) > 1 else "images"
    lines += ["", f"paired percentile bootstrap: {rows[0]['resamples']} resamples of the {seeds}, seed {rows[0]['seed']}"]
    return "\n".join(lines)


def compare_paths(given_a, given_b, *, metrics=None, resamples: int = RESAMPLES, seed: int = SEED,
                  level: float = LEVEL) -> tuple[list[dict], str]:
    """`mae-bench compare`: (rows, text) for two sides given as paths (or lists of paths)."""
    if resamples < 1 or not 0 < level < 1:
        raise MaeBenchError(f"--resamples must be >= 1 and --level in (0, 1), got {resamples} and {level}")
    a, b = load_side(given_a), load_side(given_b)
    rows = compare(a, b, metrics, resamples, seed, level)
    return rows, report(rows, a, b, given_a, given_b)
