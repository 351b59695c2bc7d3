"""`mae-bench sweep`: one of the paper's ablations end to end. A sweep recipe (`benchmarks/recipes/sweep/<name>.py`)
names a knob (a recipe key) and its values; each cell is an MAE pretraining with that value followed by the
protocols the paper's table reports (stage `pretrain`), or one shared MAE and a task run per value (stage `task`,
Figure 9's K). The scale (`paper`, `subset`, `smoke`) picks each step's recipe and overrides. Every step is what the
ordinary command (`pretrain`, `run`) does, with `--resume auto` (`steps.task_step`, as the suite's); a cell whose
result files exist is skipped. Then the
tables are built from the cells' results, the paper's numbers beside them.

Layout of OUT: `sweep.py` (the resolved sweep recipe), `cells/<cell>/seed<s>/{pretrain,<task>}/`,
`pretrain/seed<s>/` (stage `task`), `tables/`, `slurm/<cell>/seed<s>/` (submitit's scripts and logs).
"""
import math
import re
import time
from pathlib import Path

from mae_core.atomic import atomic_write
from mae_core.errors import MaeBenchError

from ..commands import tables
from ..config import load_recipe, recipe_text
from .launcher import Job, Launcher
from .steps import Step, data_root, task_step

STAGES = ("pretrain", "task")
SWEEP_TASKS = ("in1k_finetune", "in1k_linear", "in1k_partial")


def imagenet_root(root: str | None = None, imagenet: str | None = None) -> Path:
    """The ImageFolder root (train/, val/): --imagenet, else found under --data-root (`steps.data_root`)."""
    return data_root("imagenet", root, imagenet, "sweep")


def cell_name(knobs: dict) -> str:
    """A cell's folder name: `decoder_depth=8`, `mask_strategy=block,mask_ratio=0.5`."""
    return ",".join(f"{k.rsplit('.', 1)[-1]}={re.sub(r'[^A-Za-z0-9._-]', '_', str(v))}" for k, v in knobs.items())


def grid(cfg, scale: str, values=None) -> list[dict]:
    """The cells, one {recipe key: value} per value: `values` if given, else the scale's own `values`, else the
    recipe's."""
    _spec(cfg, scale, "pretrain")  # the scale exists
    keys = [cfg.knob] if isinstance(cfg.knob, str) else list(cfg.knob or [])
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise MaeBenchError("sweep: `knob` must be a recipe key such as 'model.mask_ratio', or a tuple of keys")
    vals = values if values is not None else cfg.scales[scale].get("values", cfg["values"])
    if not isinstance(vals, (list, tuple)) or not vals:
        raise MaeBenchError("sweep: `values` is empty; give one value per cell, e.g. --set 'values=[1, 8]'")
    cells = []
    for v in vals:
        if len(keys) > 1 and (not isinstance(v, (list, tuple)) or len(v) != len(keys)):
            raise MaeBenchError(f"sweep: value {v!r} does not give one entry per knob ({', '.join(keys)})")
        cells.append(dict(zip(keys, v if len(keys) > 1 else [v])))
    names = [cell_name(c) for c in cells]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise MaeBenchError(f"sweep: the value of cell {dup} is given twice")
    return cells


def _spec(cfg, scale: str, family: str):
    if scale not in cfg.scales:
        raise MaeBenchError(f"sweep has no scale {scale!r}; choose one of {', '.join(cfg.scales)}")
    if family not in cfg.scales[scale]:
        raise MaeBenchError(f"sweep: scale {scale!r} has no entry for {family}")
    return cfg.scales[scale][family]


def _recipe(spec) -> str:
    """A step's --recipe: a name, or a path made absolute (a job may start in another folder)."""
    name = spec.recipe
    return str(Path(name).resolve()) if name.endswith(".py") or "/" in name else name


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def hold_batch(target: int, batch: int, world: int) -> tuple[int, int]:
    """(per-process batch, accum_iter) with per x accum x world == target, the fewest accumulation steps that
    keep the per-process batch at most `batch`."""
    if target % world:
        raise MaeBenchError(f"effective batch {target} does not split over {world} processes")
    per_world = target // world
    accum = next(a for a in range(max(1, math.ceil(per_world / batch)), per_world + 1) if per_world % a == 0)
    return per_world // accum, accum


def _check_pretrain(cfg) -> None:
    """The pretraining model and augmentation the recipe describes exist (built on the meta device: no memory)."""
    import torch

    from mae_core.data import AUGMENTATIONS
    from mae_core.pretrain import build_mae

    if cfg.data.augment not in AUGMENTATIONS:
        raise MaeBenchError(f"data.augment={cfg.data.augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
    try:
        with torch.device("meta"):
            build_mae(cfg.model)
    except (AssertionError, ValueError, KeyError, RuntimeError) as e:
        raise MaeBenchError(f"the model of {dict(cfg.model)} cannot be built: {e}") from None


def step_sets(family: str, spec, sets: dict, world: int, where: str) -> dict:
    """The step's --set overrides, checked by resolving its recipe; with an effective batch to hold, the per-process
    batch and accum_iter that give it on `world` processes."""
    try:
        cfg = load_recipe(family, spec.recipe, sets)
        probe = family == "in1k_partial" and cfg.get("blocks") == 0
        target = spec.get("effective_batch_probe" if probe else "effective_batch")
        if target:
            key = "linear_probe.schedule.batch_size" if probe else "schedule.batch_size"
            batch, accum = hold_batch(int(target), _get(cfg, key), world)
            sets = {**sets, key: batch, "schedule.accum_iter": accum}
            cfg = load_recipe(family, spec.recipe, sets)
        if family == "pretrain":
            _check_pretrain(cfg)
    except MaeBenchError as e:
        raise MaeBenchError(f"sweep cell {where}: {e}") from None
    return sets


def plan(cfg, scale: str, imagenet: Path, out: Path, world: int = 1, values=None) -> list[list[Job]]:
    """The sweep's jobs in phases (the jobs of a phase are independent): stage `pretrain`, one phase of cells;
    stage `task`, the shared pretraining, then the cells. Every step's recipe is resolved and checked here."""
    if cfg.stage not in STAGES:
        raise MaeBenchError(f"sweep: stage {cfg.stage!r}; choose one of {', '.join(STAGES)}")
    tasks = list(cfg.tasks)
    bad = [t for t in tasks if t not in SWEEP_TASKS]
    if bad or not tasks:
        raise MaeBenchError(f"sweep: tasks must be some of {', '.join(SWEEP_TASKS)}, got {tasks}")
    seeds = list(cfg.seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise MaeBenchError(f"sweep: seeds must be a non-empty list of integers >= 0, got {seeds}")
    cells = grid(cfg, scale, values)
    out = Path(out).resolve()
    pre_spec = _spec(cfg, scale, "pretrain")

    def pretrain_step(folder: Path, knobs: dict, seed: int, where: str) -> Step:
        sets = step_sets("pretrain", pre_spec, {**pre_spec.sets, **knobs, "runtime.seed": seed}, world, where)
        return task_step("pretrain", "pretrain", _recipe(pre_spec), sets, init="scratch", data=imagenet / "train",
                         out=folder)

    shared = []
    if cfg.stage == "task":
        for seed in seeds:
            folder = out / "pretrain" / f"seed{seed}"
            step = pretrain_step(folder, {}, seed, f"pretrain seed {seed}")
            shared.append(Job(f"pretrain seed {seed}", [step], [step.done], out / "slurm" / "pretrain" / f"seed{seed}"))
    jobs = []
    for knobs in cells:
        name = cell_name(knobs)
        for seed in seeds:
            folder, label = out / "cells" / name / f"seed{seed}", name + (f" seed {seed}" if len(seeds) > 1 else "")
            if cfg.stage == "pretrain":
                steps = [pretrain_step(folder / "pretrain", knobs, seed, label)]
                ckpt = folder / "pretrain" / "checkpoint-last.pth"
            else:
                steps, ckpt = [], out / "pretrain" / f"seed{seed}" / "checkpoint-last.pth"
            for task in tasks:
                spec = _spec(cfg, scale, task)
                own = knobs if cfg.stage == "task" else {}
                sets = step_sets(task, spec, {**spec.sets, **own, "runtime.seed": seed}, world, f"{label}, {task}")
                steps.append(task_step(task, task, _recipe(spec), sets, init=str(ckpt), data=imagenet,
                                       out=folder / task))
            jobs.append(Job(label, steps, [s.done for s in steps if s.record], out / "slurm" / name / f"seed{seed}"))
    return [p for p in (shared, jobs) if p]


def run_sweep(cfg, scale: str, imagenet: Path, out: str | Path, launcher: Launcher | None = None,
              values=None) -> dict:
    """Plan (every step checked before any work), run each phase's jobs (skipping finished ones), build the tables
    from OUT/cells. Returns {"jobs", "skipped", "seconds", "tables", "table"}."""
    launcher = launcher or Launcher()
    out = Path(out).resolve()
    phases = plan(cfg, scale, imagenet, out, launcher.world_size, values)
    cells = phases[-1]
    skipped = sum(j.complete for j in cells)
    knob = cfg.knob if isinstance(cfg.knob, str) else " + ".join(cfg.knob)
    print(f"sweep {cfg.recipe_name} ({knob}) at scale {scale}: {len(cells)} cell(s), {skipped} done already; "
          f"launcher {launcher.kind}, {launcher.world_size} process(es) per step; results in {out / 'cells'}",
          flush=True)
    t0 = time.time()
    text = f"# mae-bench sweep --name {cfg.recipe_name} --recipe {scale} (resolved)\n" + recipe_text(cfg)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "sweep.py", lambda tmp: Path(tmp).write_text(text))
    for phase in phases:
        launcher.run(phase)
    result = {"jobs": len(cells), "skipped": skipped, "seconds": time.time() - t0, "tables": out / "tables",
              "table": None}
    tables(load_recipe("tables", "base"), out / "cells", out / "tables")
    if cfg.table:
        result["table"] = out / "tables" / f"{cfg.table}.md"
    return result
