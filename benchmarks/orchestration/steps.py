"""The one step type and the one loop of the suite and sweeps: a step is a task run (pretraining is one) or the
tables, called in this process; only a SLURM / submitit job runs a step as a fresh process, from its command line."""
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mae_core.errors import MaeBenchError

from ..commands import tables
from ..config import load_recipe
from ..running import run_task
from ..tasks import get_task


def say(text: str) -> None:
    """Print on rank 0 only (a job's other tasks run the same steps)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(text, flush=True)


@dataclass
class Step:
    name: str
    call: Callable[[], object]  # the step, in this process
    done: Path | None  # exists once the step has finished; None: run every time
    record: Path | None = None  # RUN folder holding result.json, for the tables and the regression check
    argv: list[str] | None = None  # the same step as a `mae-bench` command line, for a job's fresh process


def set_args(sets: dict) -> list[str]:
    """`--set key=value` arguments that the command parses back to the same values."""
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}")]


def data_root(name: str, root=None, given=None, who: str = "suite") -> Path:
    """The root of the layout `name` (`imagenet`, `coco`, `ade20k`) for the steps: the folder given for it, else
    the data root, found by the family's `transfer.data_root.DataLayout` (the one rule every task applies)."""
    from transfer.classification.data import IMAGENET_LAYOUT
    from transfer.detection.data import COCO_LAYOUT
    from transfer.segmentation.data import ADE20K_LAYOUT

    layout = {"imagenet": IMAGENET_LAYOUT, "coco": COCO_LAYOUT, "ade20k": ADE20K_LAYOUT}[name]
    if not (given or root):
        raise MaeBenchError(f"{who}: give --data-root DIR (holding {name}/) or --{name} PATH")
    markers = ("train", "val") if name == "imagenet" else layout.markers  # the protocols evaluate on val/
    try:
        path = layout.resolve(given or root)[0]
    except MaeBenchError:
        path = Path(given or root)
    if not all((path / m).is_dir() for m in markers):
        raise MaeBenchError(f"{who}: no {name} data at {given or root} (expected {'/, '.join(markers)}/ in it or in "
                            f"{' or '.join(layout.under)}; give --data-root DIR or --{name} PATH)")
    return path.resolve()


def task_step(name: str, task: str, recipe: str, sets: dict, *, init: str, data: Path, out: Path,
              arch: str | None = None, record: bool = True) -> Step:
    """A task run (`mae-bench pretrain` or `run`) with `--resume auto`, its recipe loaded (and checked) now."""
    spec = get_task(task)
    cfg = load_recipe(spec.recipes, recipe, sets)
    argv = (["pretrain"] if spec.pretraining else ["run", "--task", task, "--ckpt", init])
    argv += ["--data", str(data), "--out", str(out), "--recipe", recipe, "--resume", "auto", *set_args(sets)]
    if arch is not None and not spec.pretraining:
        argv += ["--arch", arch]
    return Step(name, partial(run_task, task, cfg, init=init, arch=None if spec.pretraining else arch, data=str(data),
                              out=str(out), resume="auto"),
                done=out / "result.json", record=out if record and not spec.pretraining else None, argv=argv)


def tables_step(results: Path, out: Path) -> Step:
    """The tables of every result under `results` (always rebuilt: cheap, and reflects every record)."""
    return Step("tables", partial(tables, load_recipe("tables", "base"), results, out), done=None,
                argv=["tables", "--results", str(results), "--out", str(out)])


def run_steps(steps: list[Step], label: str = "", execute: Callable[[int, Step], None] | None = None,
              kind: str = "") -> None:
    """Run the steps in order, skipping those whose `done` file exists (resumable); `execute(index, step)` runs one
    elsewhere (a fresh process), else `step.call()` runs it here. A failed step's error names it: `{kind}step
    '{label}{name}' failed: ...`."""
    t0 = time.time()
    for i, step in enumerate(steps, 1):
        head = f"{label}[{i}/{len(steps)}] {step.name}"
        if step.done is not None and step.done.exists():
            say(f"{head}: done already ({step.done.parent})")
            continue
        say(f"{head} ...  (time {time.time() - t0:.0f}s)")
        t1 = time.time()
        try:
            step.call() if execute is None else execute(i - 1, step)
        except MaeBenchError as e:
            raise MaeBenchError(f"{kind}step '{label}{step.name}' failed: {e}") from e
        say(f"{head}: finished in {time.time() - t1:.0f}s")
