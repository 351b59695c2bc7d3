"""`RUN/result.json`: one record per run, written atomically, read back with checks.

Pure Python (no torch), so tables build on a laptop with pandas alone.
"""
import hashlib
import json
import math
import numbers
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from mae_core.atomic import write_bytes_atomic  # torch-free

RESULT_FILE = "result.json"
REQUIRED = ("task", "protocol", "arch", "init", "dataset", "metrics", "recipe", "env", "started", "finished", "wall_s")
# mae / supervised / scratch, and the other methods' checkpoint formats (mae_core.formats: Format.kind)
INIT_KINDS = ("mae", "supervised", "scratch", "timm", "deit", "moco_v3", "dino", "ibot", "dinov2", "beit", "data2vec")


class ResultError(ValueError):
    """A result file that is missing, unreadable or not in the schema."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def git_sha(cwd: str | os.PathLike | None = None) -> str | None:
    """The checkout's commit, or None outside a git work tree."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def collect_env(device: str = "cpu") -> dict:
    """Versions and machine facts for the record (reads package metadata; imports no torch)."""
    return {"torch": _version("torch"), "timm": _version("timm"), "device": device,
            "python": platform.python_version(), "git_sha": git_sha()}


def make_record(*, task: str, protocol: str, arch: str, init: dict, dataset: dict, metrics: dict,
                recipe: dict, started: str, finished: str, wall_s: float, env: dict | None = None, **extra) -> dict:
    """Assemble a record in the schema of docs/DESIGN.md (Result record)."""
    rec = {"task": task, "protocol": protocol, "arch": arch, "init": init,
           "dataset": {**{k: dataset.get(k) for k in ("name", "root", "split", "subset")}, **dataset},
           "metrics": {k: float(v) if isinstance(v, numbers.Real) else v for k, v in metrics.items()}, "recipe": recipe,
           "env": env or collect_env(), "started": started, "finished": finished, "wall_s": float(wall_s)}
    rec.update(extra)
    validate(rec)
    return rec


# Fields the tables read besides metrics: (dotted key, allowed types, in words); None is allowed for each.
FIELD_TYPES = [(key, (str,), "a string") for key in ("task", "protocol", "arch", "blocks_part", "init.ckpt",
                                                       "dataset.name", "dataset.split", "finished")]
FIELD_TYPES += [(key, (int,), "an integer") for key in ("blocks", "dataset.subset", "dataset.val_images",
                                                         "dataset.images", "dataset.num_images")]
# what the data checks found (transfer.leakage, ImageFolder's other extensions, COCO's annotation issues)
FIELD_TYPES += [("dataset.val_duplicates_of_train", (int,), "an integer"),
                ("dataset.ignored_files", (dict,), "an object"), ("dataset.annotation_issues", (dict,), "an object")]
FIELD_TYPES += [("init.format", (str,), "a string"), ("init.method", (str,), "a string"),
                ("init.features", (dict,), "an object"), ("init.features.rule", (str,), "a string"),
                ("init.arch_spec", (dict,), "an object"),
                ("init.unused", (dict,), "an object"), ("init.unused.count", (int,), "an integer"),
                ("init.unused.keys", (dict,), "an object")]
FIELD_TYPES += [("dataset", (dict,), "an object"), ("init.pretrain", (dict,), "an object"),
                ("wall_s", (int, float), "a number")]


def validate(rec: dict, where: str = "result") -> dict:
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise ResultError(f"{where}: missing keys {', '.join(missing)}")
    metrics = rec["metrics"]
    if not isinstance(metrics, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                and math.isfinite(v) for v in metrics.values()):
        raise ResultError(f"{where}: `metrics` must map names to finite numbers")
    # a loss (pretraining's metric) is any number >= 0; every other metric is a percentage
    outside = [k for k, v in metrics.items() if not (0 <= v if k.endswith("loss") else 0 <= v <= 100)]
    if outside:
        raise ResultError(f"{where}: metrics are percentages in [0, 100] (a loss >= 0); "
                          f"{', '.join(map(str, outside))} is not")
    if not isinstance(rec["init"], dict) or rec["init"].get("kind") not in INIT_KINDS:
        raise ResultError(f"{where}: `init.kind` must be one of {', '.join(INIT_KINDS)}")
    for key, want, what in FIELD_TYPES:
        node = rec
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and (not isinstance(node, want) or isinstance(node, bool) and bool not in want):
            raise ResultError(f"{where}: `{key}` must be {what}, got {node!r}"[:300])
    return rec


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """JSON (indented, no NaN) written atomically."""
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8"))


def write_result(run_dir: str | os.PathLike, rec: dict) -> Path:
    """Validate and write `RUN/result.json` atomically."""
    validate(rec)
    return write_json_atomic(Path(run_dir) / RESULT_FILE, rec)


class DuplicateKeyError(ValueError):
    pass


def unique_keys(pairs: list) -> dict:
    """`json` object hook: an object naming one key twice is refused (json keeps the last one silently)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"key {key!r} appears twice")
        out[key] = value
    return out


def read_json(path: str | os.PathLike, what: str):
    """A JSON file's content; a missing or unreadable file, or an object with a duplicate key, is a one-line
    ResultError naming `what`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except FileNotFoundError:
        raise ResultError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:  # json.JSONDecodeError and DuplicateKeyError included
        raise ResultError(f"cannot read {what} {path}: {e}") from None


def read_result(path: str | os.PathLike) -> dict:
    """Read a result file (or `RUN/result.json` given RUN) and check its schema."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    rec = read_json(path, "result file")
    if not isinstance(rec, dict):
        raise ResultError(f"{path}: not a JSON object")
    return validate(rec, where=str(path))
