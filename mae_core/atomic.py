"""Atomic files: written beside their target, fsynced, renamed over it; never half a file, never a stray temp.

Imports no torch, so `results` (tables without torch) writes through it too.
"""
import errno
import os
import shutil
import tempfile
from pathlib import Path

from .errors import MaeBenchError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_full(exc: BaseException, directory: str) -> bool:
    # torch.save words a full disk in several ways ("file write failed", "iostream error", "unexpected pos"):
    # judge by the device, measured while the partial temp file still holds its space.
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, (OSError, RuntimeError)) and shutil.disk_usage(directory).free < 2**20


def atomic_write(path, write_fn) -> Path:
    """Call `write_fn(tmp_path)`, fsync, then rename over `path`; on failure `path` is untouched and the
    temp file removed. A full disk is one MaeBenchError naming the file and the space left."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise MaeBenchError(f"{path} is a folder; give a file name to write")
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        full = _disk_full(exc, directory)
        if os.path.exists(tmp):
            os.remove(tmp)
        if full:
            free = shutil.disk_usage(directory).free / 2**20
            raise MaeBenchError(f"no space left on device while writing {path} ({free:.1f} MiB free there now); "
                                "free some space or write elsewhere") from None
        raise
    try:
        _fsync(directory)  # makes the rename durable; not every file system allows it on a directory
    except OSError:
        pass
    return Path(path)


def copy_atomic(src, path) -> Path:
    """`path` made an atomic copy of `src`: a hard link where the file system allows (no second copy of the
    bytes on disk; safe because every writer here replaces files, never edits them), else a byte copy."""
    def link_or_copy(tmp):
        os.remove(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return atomic_write(path, link_or_copy)


def write_bytes_atomic(path, data: bytes) -> Path:
    """`data` written atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
