"""The task registry: every task (`mae-bench pretrain`, `mae-bench run --task T`) is a `Task` registered by one
module, and everything else (the CLI, the suite, sweeps, the tables, the regression keys) reads it from here.

A task module calls `register_task` (or uses it as a decorator on its runner, as timm's `register_model`). The
modules of this package register the paper's tasks, one module per family; the modules named in the environment
variable MAE_BENCH_TASKS (comma-separated, importable) register a user's own. Runners are named as
"module:function" and imported only when a task runs, so `mae-bench --help` and the tables stay free of torch.
"""
import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from mae_core.errors import MaeBenchError

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
    # Pretraining makes the encoder the other tasks measure (`mae-bench pretrain`, the first step of a suite or a
    # sweep cell): never run per init, not a `run --task` choice, no table, no regression key.
    pretraining: bool = False
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

    def load_runner(self) -> Callable:
        """The runner function (a "module:function" runner is imported now)."""
        if isinstance(self.runner, str):
            module, _, function = self.runner.partition(":")
            return getattr(importlib.import_module(module), function)
        return self.runner


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


def downstream_tasks() -> dict[str, Task]:
    """The tasks that measure an encoder (all but pretraining), in registration order."""
    return {name: t for name, t in TASKS.items() if not t.pretraining}


def primary_metrics() -> dict[str, tuple[str, ...]]:
    """Task -> its primary metrics (what a suite baseline keeps)."""
    return {t.name: t.metrics for t in downstream_tasks().values()}


# one line per MAE_BENCH_TASKS module that failed to import or register: `mae-bench --help` still works (with a
# warning), commands that need the tasks stop with the line (benchmarks.cli)
DISCOVERY_ERRORS: list[str] = []


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):  # sorted by name; a broken built-in task is a bug: it raises
        importlib.import_module(f"{__name__}.{module.name}")
    for module in filter(None, (m.strip() for m in os.environ.get("MAE_BENCH_TASKS", "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as e:  # user code: a missing module, a syntax error, a raise, a task registered twice
            what = f"{type(e).__name__}: {e}".splitlines()[0]
            DISCOVERY_ERRORS.append(f"MAE_BENCH_TASKS module {module!r} could not be loaded ({what})")


_discover()
