"""`mae-bench suite`: pretrain an MAE, train the supervised baseline, run every task for every init,
build the tables and compare each metric with a checked-in baseline.

The steps are the ordinary commands (`pretrain`, `run`, `tables`) run in this process, so a suite run
is exactly what a user would get typing them; a finished step (its result file exists) is skipped when
the suite is run again into the same folder.
"""
import time
from dataclasses import dataclass
from pathlib import Path

from mae_core.errors import MaeBenchError
from results.record import read_result

BASELINE_DIR = Path(__file__).parent / "baselines"


@dataclass
class Step:
    name: str
    argv: list[str]
    done: Path | None  # exists once the step has finished; None: run every time
    record: Path | None = None  # RUN folder holding result.json, for the tables and the regression check


@dataclass
class DataPaths:
    """Where each layout lives: a synthetic root (imagenet/, coco/, ade20k/) or real roots given one by one."""
    imagenet: Path
    coco: Path
    ade20k: Path

    @classmethod
    def from_root(cls, root: str | Path, imagenet=None, coco=None, ade20k=None) -> "DataPaths":
        given = {"imagenet": imagenet, "coco": coco, "ade20k": ade20k}
        paths = {name: Path(p) if p else (Path(root) / name if root else None) for name, p in given.items()}
        for name, path in paths.items():
            if path is None or not path.exists():
                raise MaeBenchError(f"suite: no {name} data at {path} (give --data-root with imagenet/ coco/ ade20k/, "
                                    f"or --{name} PATH)")
        return cls(**paths)

    def for_task(self, task: str) -> Path:
        return {"coco_det": self.coco, "ade20k_seg": self.ade20k}.get(task, self.imagenet)


def _sets(common: dict, pairs: dict) -> list[str]:
    """--set arguments: the suite's common settings, then the step's own (which win)."""
    items = {**common, **(pairs or {})}
    return [a for k, v in items.items() for a in ("--set", f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}")]


def plan(cfg, data: DataPaths, out: Path) -> list[Step]:
    """The suite's steps in order: pretraining, the supervised baseline, task x init, tables."""
    arch, subset = cfg.arch, cfg.subset
    # img_size is the classification input; detection and segmentation keep their recipe's input size
    # (the ViTDet smoke recipe upsamples 64 px scenes to 128 px: objects under one patch are not detectable).
    size = {"model.img_size": cfg.img_size}
    seeded = {**size, "runtime.seed": cfg.seed}
    sub = ["--subset", str(subset)] if subset else []
    pre, sup = out / "pretrain", out / "supervised"
    steps = [Step("pretrain MAE", ["pretrain", "--data", str(data.imagenet / "train"), "--out", str(pre), "--arch", arch,
                                   "--recipe", cfg.pretrain.recipe, "--seed", str(cfg.seed), "--resume", "auto",
                                   *sub, *_sets(size, cfg.pretrain.sets)],
                  done=pre / "reconstructions.png")]
    inits = {"mae": str(pre / "checkpoint-last.pth"), "supervised": f"supervised:{sup / 'checkpoint-last.pth'}",
             "scratch": "scratch"}
    unknown = [i for i in cfg.inits if i not in inits]
    if unknown:
        raise MaeBenchError(f"suite: unknown init {unknown[0]!r}; choose from {', '.join(inits)}")
    if "supervised" in cfg.inits:
        steps.append(Step("supervised baseline", [
            "run", "--task", "in1k_finetune", "--recipe", cfg.supervised.recipe, "--ckpt", "scratch", "--arch", arch,
            "--data", str(data.imagenet), "--out", str(sup), "--resume", "auto", *sub,
            *_sets(seeded, cfg.supervised.sets)], done=sup / "result.json"))
    for task in cfg.tasks:
        if task not in cfg.steps:
            raise MaeBenchError(f"suite: task {task!r} has no entry in the recipe's `steps`")
        spec = cfg.steps[task]
        for init in cfg.inits:
            run = out / "runs" / task / init
            steps.append(Step(f"{task} {init}", [
                "run", "--task", task, "--recipe", spec.recipe, "--ckpt", inits[init], "--arch", arch,
                "--data", str(data.for_task(task)), "--out", str(run), "--resume", "auto", *sub,
                *_sets(seeded if task.startswith("in1k") or task == "knn" else {"runtime.seed": cfg.seed}, spec.sets)],
                done=run / "result.json", record=run))
    # The supervised baseline is an init, not a result: tables and the regression check see the task runs only.
    steps.append(Step("tables", ["tables", "--results", str(out / "runs"), "--out", str(out / "tables")],
                      done=None))  # always rebuilt: cheap and reflects every record
    return steps


def baseline_path(name: str | None) -> Path | None:
    if not name:
        return None
    path = Path(name)
    return BASELINE_DIR / name if path.name == name else path  # a bare file name lives in benchmarks/baselines/


def run_suite(cfg, data: DataPaths, out: str | Path, *, update_baseline: bool = False, tolerance: float = 5.0) -> dict:
    """Run every step (skipping finished ones), then the regression check. Returns
    {"records": [...], "regressions": [...], "baseline": path or None, "seconds": float}."""
    from .cli import Terminated, main as cli  # the same commands a user types

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg, data, out)
    t0 = time.time()
    for i, step in enumerate(steps, 1):
        head = f"[{i}/{len(steps)}] {step.name}"
        if step.done is not None and step.done.exists():
            print(f"{head}: done already ({step.done.parent})", flush=True)
            continue
        print(f"{head} ...  (suite time {time.time() - t0:.0f}s)", flush=True)
        t1 = time.time()
        code = cli(step.argv)
        if code in (130, 143):  # Ctrl-C or SIGTERM reached the step: stop the suite the same way
            raise Terminated() if code == 143 else KeyboardInterrupt()
        if code:
            raise MaeBenchError(f"suite step '{step.name}' failed (exit {code}): mae-bench {' '.join(step.argv)}")
        print(f"{head}: finished in {time.time() - t1:.0f}s", flush=True)
    records = [read_result(s.record) for s in steps if s.record is not None]
    result = {"records": records, "regressions": [], "baseline": None, "seconds": time.time() - t0}
    path = baseline_path(cfg.baseline)
    if path is None:
        return result
    from results.regression import find_regressions, write_baseline
    if update_baseline:
        write_baseline(records, path, tolerance=tolerance)
        print(f"wrote baseline {path} ({len(records)} runs, tolerance {tolerance} points)")
    elif not path.exists():
        print(f"no baseline at {path}: nothing compared (--update-baseline writes one)")
        return result
    result["baseline"] = path
    result["regressions"] = find_regressions(records, path)
    return result
