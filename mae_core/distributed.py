"""torchrun / env:// process groups, and the few collective helpers the engine needs."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import MaeBenchError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def check_device(device: str | None) -> None:
    """Refuse a CUDA device this machine does not have, in one line (the driver's own error is a traceback deep in
    the first `.to()`): `cuda` without a GPU, `cuda:N` past the last one, or fewer GPUs than torchrun's local rank."""
    if not device or not str(device).startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise MaeBenchError(f"runtime.device={device}, but torch sees no CUDA device (torch.cuda.is_available() is "
                            "False); use runtime.device=auto or cpu")
    index = int(device.split(":", 1)[1]) if ":" in device else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise MaeBenchError(f"runtime.device={device} (local rank {os.environ.get('LOCAL_RANK', '0')}): this machine "
                            f"has {torch.cuda.device_count()} CUDA device(s)")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (nccl on GPU, gloo on CPU);
    a single process otherwise. `device`: auto | cpu | cuda."""
    check_device(device)
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = f"cuda:{local}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://", rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value)
    return value


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    return all_reduce_sum(value, info) / info.world_size if info.enabled else value


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(rows: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Every process's `rows` (an [n_rank, c] tensor; n_rank may differ) stacked in rank order, on every process:
    the per-image records an evaluation writes once on rank 0 (padded to the longest, all_gather, unpadded)."""
    if not info.enabled:
        return rows
    n = torch.tensor([len(rows)], dtype=torch.int64, device=rows.device)
    counts = [torch.zeros_like(n) for _ in range(info.world_size)]
    dist.all_gather(counts, n)
    longest = max(int(c) for c in counts)
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[:len(rows)] = rows
    parts = [torch.zeros_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:int(c)] for p, c in zip(parts, counts)])
