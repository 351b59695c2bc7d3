"""`runtime.cpu_linear`: which path fp32 `nn.Linear` products take on the CPU.

`onednn` (mae_core.onednn_linear) and `aten` (`F.linear`, torch's BLAS) force a path; `auto` times both at
start-up on the model's own Linear shapes and keeps the faster one: oneDNN was 1.75x faster on one CPU
and 6 % slower on another, so neither is right by assumption. The two paths round differently, so the
choice is written into the run's resolved recipe (checkpoints, result records) and `log.jsonl`, and a
resumed run takes the stored choice instead of measuring again. On a GPU the setting does nothing.
"""
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.nn as nn
import torch.nn.functional as F

from .errors import MaeBenchError
from .onednn_linear import OneDnnLinear, _OneDnnLinearFn, available, use_onednn_linears

CHOICES = ("auto", "onednn", "aten")
MARGIN = 0.05  # oneDNN must be this much faster: a close call keeps the stock path and does not flip between runs
ROWS = 256  # tokens per product when timing (a ViT-B batch of 8 has 8 x 197; GEMM speed changes little above this)
REPEATS = 5


def linear_shapes(model: nn.Module) -> Counter:
    """(in_features, out_features, has_bias) -> how many plain Linear layers of `model` have it."""
    return Counter((m.in_features, m.out_features, m.bias is not None) for m in model.modules()
                   if type(m) in (nn.Linear, OneDnnLinear))


def _operands(shapes: Counter, rows: int) -> list:
    gen = torch.Generator().manual_seed(0)
    ops = []
    for (n_in, n_out, bias), count in shapes.items():
        x = torch.randn(rows, n_in, generator=gen, requires_grad=True)
        w = (torch.randn(n_out, n_in, generator=gen) * n_in ** -0.5).requires_grad_()
        b = torch.zeros(n_out, requires_grad=True) if bias else None
        ops.append((count, x, w, b, torch.randn(rows, n_out, generator=gen)))
    return ops


def time_path(path: str, operands: list) -> float:
    """Seconds for one forward + backward through every Linear shape on `path` (each shape run once,
    its time weighted by how many layers have it)."""
    total = 0.0
    for count, x, w, b, g in operands:
        t0 = time.perf_counter()
        y = _OneDnnLinearFn.apply(x, w, b) if path == "onednn" else F.linear(x, w, b)
        y.backward(g)
        total += count * (time.perf_counter() - t0)
    return total


def measure(model: nn.Module, repeats: int = REPEATS, rows: int = ROWS) -> dict:
    """Median seconds per model pass for each path, after a warm-up pass, the paths interleaved `repeats` times."""
    ops = _operands(linear_shapes(model), rows)
    runs = {"aten": [], "onednn": []}
    for path in runs:
        time_path(path, ops)  # warm-up: oneDNN primitive creation, allocator
    for _ in range(repeats):
        for path in runs:
            runs[path].append(time_path(path, ops))
    return {path: statistics.median(t) for path, t in runs.items()}


def pick(times: dict, margin: float = MARGIN) -> str:
    """`onednn` when it is at least `margin` faster than `aten`, else `aten`."""
    return "onednn" if times["onednn"] < (1 - margin) * times["aten"] else "aten"


def stored_choice(run_dir, resume: str | None) -> str | None:
    """The path recorded in the checkpoint a run resumes from (None: no resume, no such file, no record)."""
    if not resume:
        return None
    path = Path(run_dir) / "checkpoint-last.pth" if resume == "auto" else Path(resume)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        value = ckpt["config"]["recipe"]["runtime"]["cpu_linear"]
    except Exception:  # no checkpoint or none of ours: the engine's resume reports a bad file
        return None
    return value if value in ("onednn", "aten") else None


def _distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def _broadcast(choice: str | None) -> str:
    """Rank 0's choice on every rank (the same numerics everywhere; only rank 0 measures)."""
    if _distributed():
        box = [choice]
        tdist.broadcast_object_list(box, src=0)
        return box[0]
    return choice


def select_cpu_linear(model: nn.Module, runtime: dict, device: str, run_dir=None, resume: str | None = None,
                      timer=measure) -> dict:
    """Resolve `runtime["cpu_linear"]` in place (auto -> onednn | aten), switch `model`'s Linears to it,
    and return a `log.jsonl` record saying what was chosen and why."""
    setting = runtime.get("cpu_linear", "auto")
    if setting not in CHOICES:
        raise MaeBenchError(f"runtime.cpu_linear must be one of {', '.join(CHOICES)}, got {setting!r}")
    record = {"type": "cpu_linear", "setting": setting}
    if not str(device).startswith("cpu"):
        choice, record["source"] = ("aten" if setting == "auto" else setting), "not a CPU run (no effect)"
    elif not available():
        choice, record["source"] = "aten", "this torch has no oneDNN linear"
    elif setting != "auto":
        choice, record["source"] = setting, "recipe"
    elif (stored := stored_choice(run_dir, resume)) is not None:
        choice, record["source"] = stored, "resumed checkpoint"
    else:
        t0 = time.perf_counter()
        times = timer(model) if not _distributed() or tdist.get_rank() == 0 else None
        choice = _broadcast(pick(times) if times else None)
        record.update(source="measured", measure_s=round(time.perf_counter() - t0, 3))
        if times:
            record["seconds"] = {k: round(v, 6) for k, v in times.items()}
    if choice == "onednn":
        use_onednn_linears(model)
    runtime["cpu_linear"] = choice
    record["choice"] = choice
    return record
