"""The task registry: every `mae-bench run --task T` is a `Task` registered by one module, and everything else (the
CLI, the suite, the tables, the regression keys) reads it from here.

A task module calls `register_task` (or uses it as a decorator on its runner, as timm's `register_model`). The
modules of this package register the paper's tasks, one module per family; the modules named in the environment
variable MAE_BENCH_TASKS (comma-separated, importable) register a user's own. Runners are named as
"module:function" and imported only when a task runs, so `mae-bench --help` and the tables stay free of torch.
"""
import importlib
import os
import pkgutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mae_core.errors import MaeBenchError
from results.record import collect_env, make_record, now_iso, sha256_file, write_result

DATA_LAYOUTS = ("imagenet", "coco", "ade20k")  # the roots `mae-bench data synth` writes and the suite takes
# Task-only `mae-bench run` options: name -> (a flag without a value, what it does). A task lists those it takes
# in `Task.options`; its runner gets them as keyword arguments.
TASK_OPTIONS = {
    "eval_only": (True, "evaluate --weights, no training"),
    "weights": (False, "a trained model (RUN/model_final.pth) for --eval-only"),
    "save_preds": (True, "write predicted label maps to RUN/preds/<image>.png (class ids 1..K)"),
}


@dataclass(frozen=True)
class Task:
    """What the rest of mae-bench knows of a task.

    The runner is `run(cfg: dict, *, init, arch, data, out, resume, **options) -> {"metrics", "init", "arch",
    "dataset", "device"}` (metrics in percent; `cfg` the resolved recipe, `cfg["task"]` this task's name)."""
    name: str
    runner: str | Callable  # "module:function" (imported when the task runs) or the function
    data: str  # the layout it reads, one of DATA_LAYOUTS: the suite's --imagenet / --coco / --ade20k root
    metrics: tuple[str, ...]  # primary metrics: the suite's regression keys and baselines
    eval_data: str  # the evaluation set as the tables name it
    recipes: str = ""  # recipe folder: a name under benchmarks/recipes, or a path (default: the task's name)
    options: tuple[str, ...] = ()  # the TASK_OPTIONS it takes
    classification: bool = False  # the suite sets its model.img_size to the suite's (others keep their recipe's)
    # Its table: "in1k" joins the ImageNet protocol table (paper Table 3 layout: rows protocol x init); any other
    # name (default: the task's) is a table of rows init and columns metric x arch, showing `table_metrics`
    # (default: the primary metrics) under `table_title`.
    table: str = ""
    table_title: str = ""
    table_metrics: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("recipes", "table"):
            object.__setattr__(self, name, getattr(self, name) or self.name)
        object.__setattr__(self, "table_metrics", tuple(self.table_metrics or self.metrics))
        object.__setattr__(self, "table_title", self.table_title or
                           f"{self.name} on {self.eval_data}: {', '.join(self.table_metrics)} by init and architecture")
        if self.data not in DATA_LAYOUTS:
            raise ValueError(f"task {self.name}: data {self.data!r} is not one of {', '.join(DATA_LAYOUTS)}")
        unknown = [o for o in self.options if o not in TASK_OPTIONS]
        if unknown:
            known = ", ".join(TASK_OPTIONS)
            raise ValueError(f"task {self.name}: unknown options {', '.join(unknown)} (known: {known})")
        if not self.metrics:
            raise ValueError(f"task {self.name}: give its primary metrics")

    def run(self, cfg: dict, **kwargs) -> dict:
        runner = self.runner
        if isinstance(runner, str):
            module, _, function = runner.partition(":")
            runner = getattr(importlib.import_module(module), function)
        return runner(cfg, **kwargs)


TASKS: dict[str, Task] = {}  # name -> Task, in registration order


def register_task(name: str, runner: str | Callable | None = None, **facts):
    """Register the task `name` (the other fields as `Task`'s) and return it; without `runner`, a decorator that
    registers the function it decorates as the runner."""
    if runner is None:
        return lambda fn: register_task(name, fn, **facts) and fn
    if name in TASKS:
        raise ValueError(f"task {name!r} is registered already")
    TASKS[name] = Task(name, runner, **facts)
    return TASKS[name]


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise MaeBenchError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def primary_metrics() -> dict[str, tuple[str, ...]]:
    """Task -> its primary metrics (what a suite baseline keeps)."""
    return {t.name: t.metrics for t in TASKS.values()}


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):  # sorted by name
        importlib.import_module(f"{__name__}.{module.name}")
    for module in filter(None, (m.strip() for m in os.environ.get("MAE_BENCH_TASKS", "").split(","))):
        importlib.import_module(module)


def run_task(task: str, cfg, *, init: str, arch: str | None, data: str, out: str, resume: str | None,
             options: dict | None = None) -> dict | None:
    """Run a task as the recipe says and write RUN/result.json (rank 0); returns the record.
    `options` holds the task's TASK_OPTIONS (None / False = not given)."""
    from ..run_folder import claim  # mmengine: not for `mae-bench --help`

    spec = get_task(task)
    options = {k: v for k, v in (options or {}).items() if v not in (None, False)}
    for key in options:
        if key not in spec.options:
            users = ", ".join(t.name for t in TASKS.values() if key in t.options) or "no task"
            raise MaeBenchError(f"--{key.replace('_', '-')} applies to {users}, not {task}")
    if options.get("eval_only") and not options.get("weights"):
        raise MaeBenchError("--eval-only needs --weights (a trained model such as RUN/model_final.pth)")
    if options.get("weights") and not options.get("eval_only"):
        raise MaeBenchError("--weights is for --eval-only; to start training from an encoder use --ckpt")
    if not Path(data).exists():
        raise MaeBenchError(f"dataset path not found: {data}")
    cfg.task = task
    main = int(os.environ.get("RANK", "0")) == 0
    with claim(out, cfg, main):
        rec = _run_and_record(spec, cfg, init=init, arch=arch, data=data, out=out, resume=resume, main=main,
                              options=options)
    if rec is not None:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in rec["metrics"].items())
        print(f"{task} ({rec['init']['kind']} {rec['arch']}): {shown}; wrote {out}/result.json")
        if rec["dataset"].get("skipped_samples"):
            print(f"warning: {rec['dataset']['skipped_samples']} training samples were unreadable images and were "
                  "skipped (--strict makes that an error)", file=sys.stderr)
    return rec


def _run_and_record(task: Task, cfg, *, init, arch, data, out, resume, main, options) -> dict | None:
    from ..config import resolved

    plain = resolved(cfg)
    started, t0 = now_iso(), time.time()
    res = task.run(plain, init=init, arch=arch, data=data, out=out, resume=resume, **options)
    if not main:
        return None
    info = res["init"]
    ckpt = info.get("ckpt")
    protocol = plain.get("protocol", task.name)
    extra = {"blocks": plain["blocks"], "blocks_part": plain.get("blocks_part", "all")} if protocol == "partial" else {}
    sha = info.get("sha256") or (sha256_file(ckpt) if ckpt else None)  # the loader hashed the file it read
    loaded = {k: info[k] for k in ("format", "arch_spec") if info.get(k)}
    if "dropped" in info:  # every checkpoint key the encoder did not use, and why
        loaded["unused"] = {"count": len(info["dropped"]), "keys": info["dropped"]}
    rec = make_record(task=task.name, protocol=protocol, arch=res["arch"],
                      init={"kind": info["kind"], "ckpt": ckpt, "sha256": sha, **loaded,
                            **({"pretrain": info["pretrain"]} if info.get("pretrain") else {})},
                      dataset=res["dataset"], metrics=res["metrics"], recipe=plain, started=started,
                      finished=now_iso(), wall_s=time.time() - t0, env=collect_env(res.get("device", "cpu")),
                      **extra)
    write_result(out, rec)
    return rec


_discover()
