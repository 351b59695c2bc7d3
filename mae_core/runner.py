"""What every training command does around its task: join the process group, seed, wrap the model for DDP,
drive the engine over the task's pieces (`run`, `Training`), read back a trained model for `--eval-only`
(`read_trained`, `Trained`)."""
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import load_strict, read_checkpoint, save_checkpoint
from .distributed import DistInfo, init_distributed, shutdown
from .engine import Engine, Hook, seed_all
from .errors import MaeBenchError


@contextmanager
def session(runtime: dict, device: str | None = None) -> Iterator[DistInfo]:
    """The process group torchrun describes (a single process otherwise) on `device` (default
    runtime.device), seeded from runtime.seed; left on exit."""
    dist = init_distributed(device or runtime["device"])
    try:
        seed_all(runtime["seed"])
        yield dist
    finally:
        shutdown(dist)


def wrap_ddp(model: torch.nn.Module, dist: DistInfo, compile: bool = False) -> torch.nn.Module:
    """`model` under DistributedDataParallel when there are several processes (and torch.compile when asked):
    what the engine trains; checkpoints hold the plain `model`."""
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.startswith("cuda") else None)
    if compile:
        net = torch.compile(net)
    return net


@dataclass
class Training:
    """A task's pieces, built from its recipe, that `run` trains (what detectron2's DefaultTrainer gets from its
    build_* methods). The lr scheduler is the task's, in optimiser updates; evaluation, the best checkpoint and
    EMA come as hooks (`mae_core.hooks`)."""

    model: torch.nn.Module  # what checkpoints hold (with EMA, the averaged model)
    optimizer: torch.optim.Optimizer
    scheduler: object  # timm's `step_update(update)` interface
    total_updates: int
    updates_per_epoch: int  # an epoch: a pass over the data, or an iteration-based task's evaluation interval
    loader: Callable[[int], Iterable]  # epoch -> this process's batches
    step: Callable  # (net, batch) -> (loss, images on this process)
    finish: Callable[[dict], dict]  # the last epoch's stats (with the hooks' metrics) -> the task's result
    hooks: list[Hook] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # every checkpoint's "config"
    desc: str = "train"
    trained: torch.nn.Module | None = None  # what the optimiser differentiates through, when not `model`
    compile: bool = False
    notes: list[dict] = field(default_factory=list)  # log.jsonl records of start-up choices
    start: Callable[[Engine], None] | None = None  # after the resume, before training (start-up line, last set-up)
    save_final: bool = False  # RUN/model_final.pth: the trained model `--eval-only --weights` reads


def run(cfg: dict, build: Callable[[DistInfo], "Training | dict"], *, out, resume: str | None = None,
        device: str | None = None) -> dict:
    """One run of a task: the session (process group, seed), the task's pieces from `build(dist)`, then
    `train`; the task's `finish` makes its result. A `build` that trains nothing (an evaluation of given
    weights) returns that result itself."""
    with session(cfg["runtime"], device) as dist:
        job = build(dist)
        if not isinstance(job, Training):
            return job
        return job.finish(train(cfg, job, dist, Path(out), resume))


def train(cfg: dict, job: Training, dist: DistInfo, out: Path, resume: str | None) -> dict:
    """The engine over `job`: the model under DDP, the recipe's engine settings, resume (`auto` or a path), the
    epochs with their hooks, checkpoints and logs; returns the last epoch's stats. A resumed finished run trains
    nothing and evaluates once more."""
    net = wrap_ddp(job.trained if job.trained is not None else job.model, dist, compile=job.compile)
    engine = Engine.from_recipe(cfg, net, job.optimizer, job.scheduler, dist=dist, run_dir=out,
                                total_updates=job.total_updates, updates_per_epoch=job.updates_per_epoch,
                                desc=job.desc, module=job.model, config=job.config, hooks=job.hooks)
    engine.resume(resume)
    for record in job.notes:
        engine.note(record)
    if job.start is not None:
        job.start(engine)
    stats = engine.fit(job.loader, job.step)
    if job.save_final and dist.is_main:
        save_checkpoint(out / "model_final.pth", job.model.state_dict(), epoch=engine.epochs - 1, config=job.config)
    return stats


def read_trained(path: str, task: str) -> dict:
    """The checkpoint `--eval-only --weights PATH` names: the model_final.pth a `mae-bench run --task <task>`
    wrote (its config names the task), read once."""
    ckpt = read_checkpoint(path)
    config = ckpt.get("config")
    made_by = config.get("task") if isinstance(config, dict) else None
    if made_by != task:
        what = f"a {made_by} model" if made_by else "not a model trained by mae-bench run"
        raise MaeBenchError(f"--weights {path} is {what}; --eval-only --task {task} needs the model_final.pth "
                            f"of a {task} run")
    if "model" not in ckpt:
        raise MaeBenchError(f"{path} holds no 'model' weights")
    return ckpt


class Trained:
    """What `--eval-only --weights PATH` evaluates, for every task that writes model_final.pth: the checkpoint
    (`read_trained`, read once), its `config`, `cfg` (the recipe with the model section the weights were trained
    with, so they are evaluated as they were trained), and `load`, which puts the weights into the model a task
    built from `cfg`."""

    def __init__(self, path: str, task: str, cfg: dict, dist: DistInfo):
        ckpt = read_trained(path, task)
        self.path, self.config, self._weights, self.cfg = str(path), ckpt["config"], ckpt["model"], cfg
        recipe = self.config.get("recipe")
        saved = recipe.get("model") if isinstance(recipe, dict) else None
        if isinstance(saved, dict):
            if saved != cfg["model"] and dist.is_main:
                print(f"note: evaluating with the model settings recorded in {path}, not the recipe's")
            self.cfg = {**cfg, "model": saved}

    def load(self, model: torch.nn.Module, info: dict, what: str) -> dict:
        """The weights into `model` (every key, every shape: `load_strict`); returns the run's `info` with
        `weights`, the file evaluated."""
        load_strict(model, self._weights, self.path, what)
        self._weights = None  # held no longer than needed
        return {**info, "weights": self.path}
