"""What a speed figure needs beside it: the CPU (vendor, family, model), the cores this process may use, and
the machine load seen while it ran, with a warning when that load is not only the benchmark's own."""
import os
import platform
import re
from pathlib import Path


def cpu_model(cpuinfo: str | None = None) -> dict:
    """{"name", "vendor", "family", "model"} from /proc/cpuinfo (None where it does not say)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""

    def field(key):
        m = re.search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.M)
        return m.group(1).strip() if m else None

    family, model = field("cpu family"), field("model")
    return {"name": field("model name") or platform.processor() or platform.machine(),
            "vendor": field("vendor_id"), "family": int(family) if family and family.isdigit() else None,
            "model": int(model) if model and model.isdigit() else None}


def describe_cpu(cpu: dict) -> str:
    extra = ", ".join(f"{k} {cpu[k]}" for k in ("family", "model") if cpu.get(k) is not None)
    return f"{cpu['name']}" + (f" ({extra})" if extra else "")


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def load_warning(samples: list, threads: int) -> str | None:
    """A warning when the load seen is well above the benchmark's own `threads`: before the run (when none of
    ours are running) above half a core per thread, or at any later sample above 1.25x the threads + 0.5."""
    seen = [s for s in samples if s is not None]
    if not seen:
        return None
    busy = seen[0] > 0.5 * threads + 0.25 or any(s > 1.25 * threads + 0.5 for s in seen[1:])
    if not busy:
        return None
    return (f"machine load {', '.join(f'{s:.2f}' for s in seen)} (1-min averages, before -> after) is well above "
            f"this benchmark's {threads} thread(s): another process shares the CPU; figures taken under load")
