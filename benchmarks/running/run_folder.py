"""One run per folder: an advisory lock, leftovers of killed writers removed, a finished run's provenance kept."""
import fcntl
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

from mae_core.errors import MaeBenchError

from mae_core.atomic import write_bytes_atomic

from ..config import recipe_text, save_recipe
from .identity import IDENTITY_FILE, check_identity

LOCK = ".lock"
OUTPUTS = ("result.json", "model_final.pth")  # and checkpoint-*.pth: a finished or resumable run


def has_outputs(out: Path) -> bool:
    """Whether RUN holds a finished or resumable run (a result, a final model or a checkpoint)."""
    return any((out / name).exists() for name in OUTPUTS) or any(out.glob("checkpoint-*.pth"))


def _take_lock(out: Path):
    """An exclusive flock on RUN/.lock holding 'pid host'; the kernel drops it when the owner dies."""
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise MaeBenchError(f"{out} is in use by another run (pid and host: {owner}); wait for it to end "
                            "or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    return fd


def remove_stale_temps(out: Path) -> list[Path]:
    """Delete the hidden `.NAME.XXXX.tmp` files atomic writes leave when a process is killed mid-write."""
    stale = [p for p in out.rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _check_same_recipe(out: Path, text: str) -> None:
    saved = out / "recipe.py"
    if not saved.is_file() or not has_outputs(out):
        return
    if saved.read_text() != text:
        raise MaeBenchError(f"{out} holds a run made with another recipe ({saved}); choose another --out, "
                            "or repeat that run's settings to continue it")


def _stored_identity(out: Path) -> dict | None:
    """RUN/identity.json of the finished or resumable run RUN holds (None: no such run, or one made before runs
    stored their identity, which is then taken over unchecked)."""
    path = out / IDENTITY_FILE
    if not has_outputs(out) or not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MaeBenchError(f"cannot read {path} ({e}); it says which run {out} holds: choose another --out") from None
    return stored if isinstance(stored, dict) else None


@contextmanager
def claim(out: str | Path, cfg, main: bool = True, identity: dict | None = None):
    """Hold RUN for this run: lock it, clean stale temp files, refuse the outputs of another recipe or of another
    identity (`benchmarks.running.identity`: task, init, data), write recipe.py and identity.json.
    Only the main process claims; other ranks of a DDP run write nothing here."""
    if not main:
        yield
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MaeBenchError(f"--out {out} is a file; give a folder for the run")
    created = not out.exists()
    fresh = created or not any(out.iterdir())
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = _take_lock(out)
    except OSError as e:  # a read-only file system, no permission
        raise MaeBenchError(f"cannot write the run folder --out {out}: {e.strerror or e}") from None
    try:
        try:
            remove_stale_temps(out)
            _check_same_recipe(out, recipe_text(cfg))
            if identity is not None:
                check_identity(out, _stored_identity(out), identity)
            save_recipe(cfg, out)
            if identity is not None:
                write_bytes_atomic(out / IDENTITY_FILE, (json.dumps(identity, indent=1) + "\n").encode())
        except OSError as e:
            raise MaeBenchError(f"cannot write the run folder --out {out}: {e.strerror or e}") from None
        yield
    except BaseException:
        if fresh:
            _forget_unstarted(out, created)
        raise
    finally:
        os.close(fd)  # releases the flock; the file stays (harmless, and reused by the next run)


def _forget_unstarted(out: Path, created: bool) -> None:
    """A run into an empty folder that failed before writing anything but recipe.py (bad input found late, no GPU)
    leaves the folder as it found it: a recipe.py alone would look like a run."""
    if {p.name for p in out.iterdir()} <= {"recipe.py", IDENTITY_FILE, LOCK}:
        (out / "recipe.py").unlink(missing_ok=True)
        (out / IDENTITY_FILE).unlink(missing_ok=True)
        if created:
            (out / LOCK).unlink(missing_ok=True)
            out.rmdir()
