"""Train/validation leakage: a validation split that is the training split is refused, and validation images
byte-identical to training images are counted and warned about (their score measures memorisation).

The rule: the same folder (or a link to it) for both splits is an error, as every validation score would be on
training images; duplicate files (equal content, found by sha256) are a warning with their count in the result's
`dataset.val_duplicates_of_train`, since real datasets hold a few (ImageNet's val has near-duplicates in train) and
dropping them would change the protocol. Only files whose size matches a file of the other split are read: their
first 4 KiB, and the whole file only when those match too; the hashes are cached (`mae_core.file_cache`), so a rerun
reads no image again.
"""
import hashlib
import os
import sys
from collections import defaultdict
from pathlib import Path

from mae_core.errors import MaeBenchError
from mae_core.file_cache import FileCache, cache_dir


def check_distinct_splits(train_dir: str | Path, val_dir: str | Path) -> None:
    """Raise when the validation folder is the training folder (itself, or through a link)."""
    if os.path.realpath(train_dir) == os.path.realpath(val_dir):
        how = " (a link to it)" if os.path.islink(val_dir) or os.path.islink(train_dir) else ""
        raise MaeBenchError(f"the validation split {val_dir} is the training split {train_dir}{how}: every "
                            "validation score would be measured on training images")


HEAD = 4096  # bytes read first: a JPEG's or PNG's first 4 KiB already differ between different images


def _digest(path: str, cache: FileCache, whole: bool) -> str:
    """sha256 of the file's first HEAD bytes, or (`whole`) of all of it; both cached in one entry."""
    entry = cache.get(path)
    entry = entry if isinstance(entry, dict) else {}
    key = "sha256" if whole else "head"
    if key not in entry:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            if whole:
                while block := f.read(1 << 20):
                    h.update(block)
            else:
                h.update(f.read(HEAD))
        entry = {**entry, key: h.hexdigest()}
        cache.put(path, entry)
    return entry[key]


def _same_content(a: str, b: str, cache: FileCache) -> bool:
    return (_digest(a, cache, False) == _digest(b, cache, False)
            and _digest(a, cache, True) == _digest(b, cache, True))


def find_duplicates(train_files, val_files, cache: FileCache | None = None) -> list[tuple[str, str]]:
    """(validation file, a training file of the same content) for every validation file with a copy in training:
    the same real file, or equal size and sha256."""
    cache = cache or FileCache(None, "sha256")
    by_size = defaultdict(list)
    for p in map(str, train_files):
        try:
            by_size[os.path.getsize(p)].append(p)
        except OSError:  # unreadable files are the loaders' to count
            continue
    train_real = {os.path.realpath(p): p for p in map(str, train_files)}
    found = []
    for v in map(str, val_files):
        if os.path.realpath(v) in train_real:
            found.append((v, train_real[os.path.realpath(v)]))
            continue
        try:
            twin = next((t for t in by_size.get(os.path.getsize(v), ()) if _same_content(v, t, cache)), None)
        except OSError:
            continue
        if twin is not None:
            found.append((v, twin))
    return found


def count_leakage(train_files, val_files, data_root: str | Path, run_dir: str | Path | None) -> int:
    """How many validation files have a byte-identical copy among the training files, with one stderr warning when
    any do; computed on the main process only (others return 0, and record nothing)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    cache = FileCache(cache_dir(data_root, run_dir), "sha256")
    dups = find_duplicates(train_files, val_files, cache)
    cache.save()
    if dups:
        v, t = dups[0]
        print(f"warning: {len(dups)} of {len(val_files)} validation images are byte-identical to training images "
              f"(e.g. {v} = {t}); the score counts them (dataset.val_duplicates_of_train in result.json)",
              file=sys.stderr)
    return len(dups)
