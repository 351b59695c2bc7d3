"""`mae-bench suite`: pretrain an MAE, train the supervised baseline, run every task for every init,
build the tables and compare each metric with a checked-in baseline.

The steps (`steps.Step`) are what the ordinary commands (`pretrain`, `run`, `tables`) do, called in this process with
the recipe each would load, so a suite run is exactly what a user would get typing them; a finished step (its result
file exists) is skipped when the suite is run again into the same folder.
"""
import time
from dataclasses import dataclass
from pathlib import Path

from mae_core.errors import MaeBenchError
from results.record import read_result

from ..tasks import TASKS, downstream_tasks, get_task, primary_metrics
from .steps import Step, data_root, run_steps, tables_step, task_step

BASELINE_DIR = Path(__file__).parents[1] / "baselines"


@dataclass
class DataPaths:
    """Where each layout lives: a synthetic root (imagenet/, coco/, ade20k/) or real roots given one by one."""
    imagenet: Path
    coco: Path
    ade20k: Path

    @classmethod
    def from_root(cls, root: str | Path | None, imagenet=None, coco=None, ade20k=None) -> "DataPaths":
        given = {"imagenet": imagenet, "coco": coco, "ade20k": ade20k}
        return cls(**{name: data_root(name, root, p, "suite") for name, p in given.items()})

    def for_task(self, task: str) -> Path:
        return getattr(self, get_task(task).data)


def init_ckpts(pretrain: Path, supervised: Path) -> dict[str, str]:
    """Each init's --ckpt: the MAE pretraining run's last checkpoint, the supervised baseline's, none."""
    return {"mae": str(pretrain / "checkpoint-last.pth"),
            "supervised": f"supervised:{supervised / 'checkpoint-last.pth'}", "scratch": "scratch"}


def plan(cfg, data: DataPaths, out: Path) -> list[Step]:
    """The suite's steps in order: pretraining, the supervised baseline, task x init, tables. Every step's recipe
    is loaded here, so a bad override fails before any work."""
    arch, seed = cfg.arch, cfg.seed
    # img_size is the classification input; the other tasks keep their recipe's input size (the ViTDet smoke
    # recipe upsamples 64 px scenes to 128 px: objects under one patch are not detectable).
    size = {"model.img_size": cfg.img_size}
    seeded = {**size, "runtime.seed": seed}
    sub = {"data.subset": cfg.subset} if cfg.subset else {}
    pre, sup = out / "pretrain", out / "supervised"
    steps = [task_step("pretrain MAE", "pretrain", cfg.pretrain.recipe,
                       {**size, **cfg.pretrain.sets, "model.arch": arch, "runtime.seed": seed, **sub},
                       init="scratch", data=data.imagenet / "train", out=pre)]
    inits = init_ckpts(pre, sup)
    unknown = [i for i in cfg.inits if i not in inits]
    if unknown:
        raise MaeBenchError(f"suite: unknown init {unknown[0]!r}; choose from {', '.join(inits)}")

    def step(name: str, task: str, recipe: str, sets: dict, init: str, run: Path, record=True) -> Step:
        return task_step(name, task, recipe, {**sets, **sub}, init=init, data=data.for_task(task), out=run,
                         arch=arch, record=record)

    if "supervised" in cfg.inits:  # an init, not a result: tables and the regression check see the task runs only
        steps.append(step("supervised baseline", "in1k_finetune", cfg.supervised.recipe,
                          {**seeded, **cfg.supervised.sets}, "scratch", sup, record=False))
    for task in downstream_tasks() if cfg.tasks is None else cfg.tasks:
        spec = cfg.steps.get(task, cfg.default_step)
        own = seeded if get_task(task).classification else {"runtime.seed": seed}
        for init in cfg.inits:
            steps.append(step(f"{task} {init}", task, spec.recipe, {**own, **spec.sets}, inits[init],
                              out / "runs" / task / init))
    steps.append(tables_step(out / "runs", out / "tables"))
    return steps


def baseline_path(name: str | None) -> Path | None:
    if not name:
        return None
    path = Path(name)
    return BASELINE_DIR / name if path.name == name else path  # a bare file name lives in benchmarks/baselines/


def _scoped_baseline(cfg, path: Path) -> dict:
    """The baseline's settings of the tasks and inits this suite runs; refused when that is none of them, or when a
    key names a task that is not registered."""
    from results.regression import checked_scope, load_baseline
    return checked_scope(load_baseline(path), list(downstream_tasks()) if cfg.tasks is None else list(cfg.tasks),
                         list(cfg.inits), list(TASKS), f"baseline {path}")


def run_suite(cfg, data: DataPaths, out: str | Path, *, update_baseline: bool = False, tolerance: float = 5.0) -> dict:
    """Run every step (skipping finished ones), then the regression check. Returns
    {"records": [...], "regressions": [...], "baseline": path or None, "seconds": float}."""
    out = Path(out)
    path = baseline_path(cfg.baseline)
    scoped = None
    if path is not None and not update_baseline and path.exists():  # a bad baseline is refused before any work
        scoped = _scoped_baseline(cfg, path)
    out.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg, data, out)
    t0 = time.time()
    run_steps(steps, kind="suite ")
    records = [read_result(s.record) for s in steps if s.record is not None]
    result = {"records": records, "regressions": [], "baseline": None, "seconds": time.time() - t0}
    if path is None:
        return result
    from results.regression import find_regressions, write_baseline
    if update_baseline:
        write_baseline(records, path, tolerance=tolerance, metrics=primary_metrics())
        print(f"wrote baseline {path} ({len(records)} runs, tolerance {tolerance} points)")
        scoped = _scoped_baseline(cfg, path)
    elif scoped is None:
        print(f"no baseline at {path}: nothing compared (--update-baseline writes one)")
        return result
    result["baseline"] = path
    # checked on the tasks and inits this suite runs (the demo runs two inits; `scoped` was read before the steps)
    result["regressions"] = find_regressions(records, scoped)
    return result
