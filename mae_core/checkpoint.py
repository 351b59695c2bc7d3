"""Checkpoint files: atomic saving of plain data, safe reading (never unpickles code; torch, safetensors and HF
ViTMAE folders), and the one strict-load check. What the weights in a file are: `mae_core.weights`."""
import argparse
import io
import json
import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from .atomic import atomic_write
from .errors import MaeBenchError

# Globals the weights-only unpickler may build, on top of torch's defaults (tensors,
# OrderedDict, torch.Size, plain containers). Keep it minimal: every entry is an object
# whose construction runs no user code.
ALLOWED_GLOBALS = [
    argparse.Namespace,  # official MAE training checkpoints pickle their command line under "args"
]

_RESERVED = ("model", "optimizer", "epoch", "scaler", "config")
_SCALARS = (str, int, float, bool, type(None))  # exact types: np.float64 subclasses float but pickles as numpy


def _check_plain(value, where: str, tensors: bool = False) -> None:
    if type(value) in _SCALARS or (tensors and isinstance(value, torch.Tensor)):
        return
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"{where}: key {k!r} is not a str")
            _check_plain(v, f"{where}[{k!r}]", tensors)
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]", tensors)
        return
    raise TypeError(f"{where} is a {type(value).__qualname__}; checkpoints hold only plain data "
                    f"(dict/list/str/int/float/bool/None{'/Tensor' if tensors else ''})")


def _state(obj):
    return obj.state_dict() if hasattr(obj, "state_dict") else obj


def save_checkpoint(path, model_state, *, optimizer=None, epoch=0, scaler=None, config=None, extra=None) -> None:
    """Atomically write {"model", "optimizer", "epoch", "scaler", "config"} (+ `extra`) with torch.save."""
    config = {} if config is None else config
    _check_plain(config, "config")
    ckpt = {"model": _state(model_state), "optimizer": _state(optimizer), "epoch": int(epoch),
            "scaler": _state(scaler), "config": config}
    for key, value in (extra or {}).items():
        if key in _RESERVED:
            raise ValueError(f"extra key {key!r} would overwrite the checkpoint's own {key!r}")
        _check_plain(value, f"extra[{key!r}]", tensors=True)
        ckpt[key] = value
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


class SafetensorsFile(dict):
    """{"model": tensors} read from a .safetensors file (flat by nature: formats tell it from a `model` wrapper)."""


def _is_safetensors(path: str, data: bytes | None = None) -> bool:
    if path.endswith(".safetensors"):
        return True
    if data is not None:
        head = data[:9]
    else:
        with open(path, "rb") as f:
            head = f.read(9)
    # safetensors: u64 little-endian header length, then the JSON header
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK")


def truncated(path: str, data: bytes | None = None) -> bool:
    """Whether a file is cut short: a zip (torch's format) without a complete end-of-central-directory record, a
    safetensors file shorter than its header says (a legacy pickle file cut short is caught by its reader's EOF);
    `data`: the file's bytes, already read."""
    size = os.path.getsize(path) if data is None else len(data)
    with open(path, "rb") if data is None else io.BytesIO(data) as f:
        head = f.read(9)
        if head.startswith(b"PK\x03\x04"):
            f.seek(max(0, size - (22 + 65535)))  # the record is 22 bytes plus a comment of at most 64 KiB
            tail = f.read()
            at = tail.rfind(b"PK\x05\x06")
            return at < 0 or len(tail) - at < 22
        if _is_safetensors(path, head) and head[8:9] == b"{":  # else not a safetensors file at all
            n = int.from_bytes(head[:8], "little")
            f.seek(8)
            try:
                header = json.loads(f.read(n))
                end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError):
                return size < 8 + n
            return size < 8 + n + end
    return False


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return reason if len(reason) <= 120 else reason[:117] + "..."


HASH_IN_MEMORY = 4 << 30  # files up to 4 GiB are read once into memory, hashed and parsed from the same bytes
# One slot: the bytes and sha256 of the last file hashed with file_sha256(keep=True) (a run's identity), keyed by
# (real path, size, mtime_ns); the next read_checkpoint_hashed of that unchanged file takes them, so a run reads its
# checkpoint once. A file changed in between misses the key and is read afresh.
_KEPT: dict[tuple, tuple[bytes, str]] = {}
_SHA_MEMO: dict[tuple, str] = {}  # _file_key -> sha256: a file (or HF folder) is hashed once per process


def drop_kept() -> None:
    """Forget the kept bytes (a run that ends without loading its checkpoint)."""
    _KEPT.clear()


def _file_key(path) -> tuple:
    """(real path, size, mtime_ns); of a folder, its files' (name, size, mtime_ns): a file rewritten inside an HF
    folder changes no folder time."""
    st = os.stat(path)
    if os.path.isdir(path):
        files = tuple((p.relative_to(path).as_posix(), (s := p.stat()).st_size, s.st_mtime_ns)
                      for p in sorted(Path(path).rglob("*")) if p.is_file())
        return os.path.realpath(path), files
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise MaeBenchError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None


def read_checkpoint_hashed(path) -> tuple[dict, str]:
    """(read_checkpoint's dict, the sha256 of the file): a file up to HASH_IN_MEMORY is read once (or its bytes
    taken from file_sha256(keep=True)) and both come from the same bytes; a larger one (or an HF folder) is parsed
    from the file and hashed by file_sha256 (a second pass, unless this process hashed it already)."""
    import hashlib
    path = os.fspath(path)
    if os.path.isfile(path) and os.path.getsize(path) <= HASH_IN_MEMORY:
        key = _file_key(path)
        kept = _KEPT.pop(key, None)
        data, sha = kept if kept else (_read_bytes(path), None)
        _SHA_MEMO[key] = sha = sha or hashlib.sha256(data).hexdigest()
        return read_checkpoint(path, data), sha
    return read_checkpoint(path), file_sha256(path)


def read_checkpoint(path, data: bytes | None = None) -> dict:
    """The raw top-level dict of a torch (weights-only) or safetensors file (a SafetensorsFile {"model": tensors} for
    the latter), or of an HF folder (`hf_import`); `data`: the file's bytes, already read."""
    path = os.fspath(path)
    if data is None and not os.path.exists(path):
        raise MaeBenchError(f"checkpoint not found: {path}")
    if data is None and os.path.isdir(path):
        from .hf_import import is_hf_folder, read_hf_folder
        if is_hf_folder(Path(path)):
            return read_hf_folder(Path(path), read_checkpoint)
        raise MaeBenchError(f"checkpoint {path} is a directory without a config.json (not an HF model folder)")
    bad = f"cannot read checkpoint {path}: not a PyTorch or safetensors file"
    try:
        safetensors_file = _is_safetensors(path, data)
        if (os.path.getsize(path) if data is None else len(data)) == 0:
            raise MaeBenchError(f"{bad} (the file is empty)")
        if truncated(path, data):  # say so, rather than the zip reader's "failed finding central directory"
            raise MaeBenchError(f"cannot read checkpoint {path}: the file is truncated ({os.path.getsize(path)} "
                                "bytes; an interrupted copy or download?)")
    except OSError as exc:
        raise MaeBenchError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if safetensors_file:
        from safetensors.torch import load, load_file
        try:
            return SafetensorsFile(model=load_file(path, device="cpu") if data is None else load(data))
        except Exception as exc:
            raise MaeBenchError(f"{bad} ({_reason(exc)})") from None
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(ALLOWED_GLOBALS):
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # we fail cleanly anyway
            ckpt = torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found and found.group(1).endswith("."):  # a GLOBAL whose name the end of the file cut off
            raise MaeBenchError(f"cannot read checkpoint {path}: the file is truncated ({_reason(exc)})") from None
        if found:
            name = re.sub(r"^(posix|nt)\.", "os.", found.group(1))
            raise MaeBenchError(f"refusing to load {path}: it pickles `{name}`, which is not on the allow-list") from None
        raise MaeBenchError(f"{bad} ({_reason(exc)})") from None
    except Exception as exc:
        if isinstance(exc, EOFError) or re.search(r"truncated|Ran out of input|unexpected EOF", str(exc), re.I):
            raise MaeBenchError(f"cannot read checkpoint {path}: the file is truncated ({_reason(exc)})") from None
        raise MaeBenchError(f"{bad} ({_reason(exc)})") from None
    if not isinstance(ckpt, dict):
        raise MaeBenchError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a dict of weights")
    return ckpt


def _hash_file(path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_sha256(path, keep: bool = False) -> str:
    """Hex sha256 of a checkpoint file; of a folder (HF), the sha256 of its files' names and sha256s, sorted.
    Computed once per process for a path unchanged since (size, mtime); with `keep`, a file up to HASH_IN_MEMORY
    is read whole and its bytes kept for the loader (`_KEPT`, one slot)."""
    import hashlib
    path = Path(path)
    key = _file_key(path)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    if keep and path.is_file() and key[1] <= HASH_IN_MEMORY:
        data = _read_bytes(str(path))
        sha = hashlib.sha256(data).hexdigest()
        _KEPT.clear()
        _KEPT[key] = data, sha
    elif not path.is_dir():
        sha = _hash_file(path)
    else:
        listing = "".join(f"{p.relative_to(path).as_posix()}\t{_hash_file(p)}\n" for p in sorted(path.rglob("*"))
                          if p.is_file())
        sha = hashlib.sha256(listing.encode()).hexdigest()
    _SHA_MEMO[key] = sha
    return sha


def check_fit(expected: dict, sd: dict, path, what: str, may_be_missing=(), may_be_extra=()) -> None:
    """Every strict-load check's one error line: the keys of `sd` missing from, unexpected in or mis-shaped for
    `expected` (a state dict, or key -> shape), apart from those allowed: "checkpoint PATH does not fit WHAT (...)"."""
    missing = [k for k in expected if k not in sd and k not in may_be_missing]
    unexpected = [k for k in sd if k not in expected and k not in may_be_extra]
    shapes = [f"{k} {list(sd[k].shape)} vs {list(getattr(v, 'shape', v))}" for k, v in expected.items()
              if k in sd and sd[k].shape != getattr(v, "shape", v)]
    problems = [f"{label}: {', '.join(items[:3])}{'...' if len(items) > 3 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if items]
    if problems:
        raise MaeBenchError(f"checkpoint {path} does not fit {what} ({'; '.join(problems)})")


def load_strict(module: torch.nn.Module, state_dict: dict, path, what: str) -> None:
    """`module.load_state_dict(state_dict, strict=True)`, or one line naming the missing, unexpected and
    mis-shaped keys: "checkpoint PATH does not fit WHAT (...)"."""
    check_fit(module.state_dict(), state_dict, path, what)
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:  # keys and shapes fit; e.g. a tensor that cannot be copied
        raise MaeBenchError(f"checkpoint {path} does not fit {what} ({' '.join(str(e).split())[:300]})") from None
