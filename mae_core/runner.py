"""What every training command does around its task: join the process group, seed, wrap the model for DDP."""
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .checkpoint import read_checkpoint
from .distributed import DistInfo, init_distributed, shutdown
from .engine import seed_all
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
