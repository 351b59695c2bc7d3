"""What every command that runs a task does around it: join the process group, seed and run the task's trainer
(`run`; the trainer: `mae_core.trainer`); read back a trained model for `--eval-only` (`read_trained`, `Trained`)."""
from collections.abc import Callable

import torch

from .checkpoint import load_strict, read_checkpoint
from .distributed import DistInfo, init_distributed, shutdown
from .engine import seed_all
from .errors import MaeBenchError


def run(cfg: dict, build: Callable[[DistInfo], object]) -> dict:
    """One run of a task: the process group torchrun describes (a single process otherwise) on runtime.device,
    seeded from runtime.seed and left at the end; in it `build(dist)`: a built
    `mae_core.trainer.Trainer`, whose `train` returns the task's result, or (a run that trains nothing: an
    evaluation of given weights, k-NN) that result itself."""
    dist = init_distributed(cfg["runtime"]["device"])
    try:
        seed_all(cfg["runtime"]["seed"])
        job = build(dist)
        return job if isinstance(job, dict) else job.train()
    finally:
        shutdown(dist)


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
