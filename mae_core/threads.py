"""CPU threads: as many as the cores this process may really use, set once at start-up, one per data worker.

`os.cpu_count()` (and torch's default) counts the host's cores, not the ones a container or scheduler gives
the process: the affinity mask (taskset, Slurm, `docker --cpuset-cpus`) and a cgroup v2 `cpu.max` quota
(`docker --cpus`, Kubernetes limits) both cut it, and more threads than cores makes every GEMM slower.
"""
import math
import os
from pathlib import Path

import torch

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_limit() -> float | None:
    """The tightest cgroup v2 `cpu.max` quota (in cores) on this process's cgroup and its parents; None: no quota."""
    try:
        line = next(ln for ln in PROC_CGROUP.read_text().splitlines() if ln.startswith("0::"))
    except (OSError, StopIteration):
        return None
    folder, limits = CGROUP_ROOT / line[3:].strip().lstrip("/"), []
    while True:
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota != "max" and int(period) > 0:
                limits.append(int(quota) / int(period))
        except (OSError, ValueError):
            pass
        if folder == CGROUP_ROOT or CGROUP_ROOT not in folder.parents:
            break
        folder = folder.parent
    return min(limits) if limits else None


def available_cores() -> int:
    """Cores this process may run on: the affinity mask, cut to a cgroup quota (rounded down), at least 1."""
    cores = _affinity()
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, math.floor(limit))
    return max(1, cores)


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def configure_threads(requested: int | None = None) -> tuple[int, str]:
    """Set torch's intra-op threads once at start-up and return (threads, where the number came from):
    `requested` (a recipe setting), else OMP_NUM_THREADS, else the available cores shared among the
    processes torchrun starts on this node."""
    if requested:
        n, source = int(requested), "recipe"
    elif (env := _env_threads()) is not None:
        n, source = env, "OMP_NUM_THREADS"
    else:
        per_node = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
        n, source = max(1, available_cores() // per_node), "available cores"
    torch.set_num_threads(n)
    return n, source


def worker_init(_worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn`: one torch thread per worker, so N workers beside the main process do not start
    N x cores threads (torch's worker loop does the same today; this keeps it explicit). OpenCV's pool is left
    alone: resizing a pool inherited through fork deadlocks (`cv2.setNumThreads` in the child waits on the
    parent's pool threads, which the child does not have)."""
    torch.set_num_threads(1)
