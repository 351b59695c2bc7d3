"""Facts computed from a file's bytes (a content hash, a label map's class ids), cached on disk so a rerun does not
read the files again.

An entry is kept for a file's real path while its size and modification time (ns) are unchanged. The cache lives in
`<dataset root>/.mae-bench-cache/` when that folder can be written, else in the run folder's `.mae-bench-cache/`
(what `cache_dir` picks); it is a JSON file per kind of fact, written atomically (a concurrent writer's entries may
be lost, never half a file).
"""
import json
import os
from pathlib import Path

from .atomic import write_bytes_atomic

CACHE_DIR = ".mae-bench-cache"  # left out of a dataset's listing (benchmarks.running.identity)


def cache_dir(data_root: str | Path, run_dir: str | Path | None = None) -> Path | None:
    """`<data_root>/.mae-bench-cache` when it exists or can be made there, else `<run_dir>/.mae-bench-cache`
    (None without a run folder: nothing is cached)."""
    for base in (data_root, run_dir):
        if base is None:
            continue
        folder = Path(base) / CACHE_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return None


def file_key(path: str | Path) -> tuple[str, list[int]]:
    """(real path, [size, mtime_ns]): what an entry is stored under and checked against."""
    st = os.stat(path)
    return os.path.realpath(path), [st.st_size, st.st_mtime_ns]


class FileCache:
    """`get(path)` / `put(path, value)` of one kind of fact; `save()` writes what changed."""

    def __init__(self, folder: Path | None, kind: str):
        self.path = folder / f"{kind}.json" if folder is not None else None
        self.entries, self.dirty = {}, False
        if self.path is not None and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):  # a damaged cache is recomputed, never trusted
                self.entries = {}

    def get(self, path: str | Path):
        real, stamp = file_key(path)
        entry = self.entries.get(real)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == stamp:
            return entry[1]
        return None

    def put(self, path: str | Path, value) -> None:
        real, stamp = file_key(path)
        self.entries[real] = [stamp, value]
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:
            write_bytes_atomic(self.path, json.dumps(self.entries, separators=(",", ":")).encode())
        except OSError:  # a cache that cannot be written costs time on the next run, nothing else
            pass
        self.dirty = False
