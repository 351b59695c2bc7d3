"""A run's identity: its task, resolved recipe, init (the checkpoint's sha256, or scratch and the architecture) and
data (the dataset root's real path and a fingerprint of its file listing: relative names and sizes).

`benchmarks.running.run_folder.claim` stores it as RUN/identity.json when a run starts and refuses a run folder holding a
finished or resumable run of another identity, naming what differs, so a finished run is never replaced by (nor a
resumed run continued as) a run of another checkpoint or dataset.
"""
import hashlib
import os
from pathlib import Path

from mae_core.errors import MaeBenchError
from mae_core.file_cache import CACHE_DIR
from mae_core.checkpoint import file_sha256

IDENTITY_FILE = "identity.json"
# where each task data layout's root is found under --data (module, function -> (root, name))
_RESOLVERS = {"imagenet": "transfer.classification.data", "coco": "transfer.detection.data",
              "ade20k": "transfer.segmentation.data"}
def _walk_files(root: Path, exclude: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """(relative name, size) of every file under `root`, sorted; folder links are followed once, inside `root`
    only (as `mae_core.images.walk_images`); `.mae-bench-cache` and the real paths in `exclude` are left out."""
    top = os.path.realpath(root)
    seen, found = {top, *exclude}, []
    for folder, dirs, files in os.walk(root, followlinks=True):
        keep = []
        for name in sorted(dirs):
            real = os.path.realpath(os.path.join(folder, name))
            if name != CACHE_DIR and real not in seen and os.path.commonpath([top, real]) == top:
                seen.add(real)
                keep.append(name)
        dirs[:] = keep
        for name in files:
            path = os.path.join(folder, name)
            try:
                size = os.stat(path).st_size
            except OSError:  # a dangling link: listed without a size
                size = -1
            found.append((os.path.relpath(path, root), size))
    return sorted(found)


def listing_fingerprint(root: str | Path, exclude: tuple[str, ...] = ()) -> dict:
    """{"files": count, "listing_sha256": hash of the sorted relative names and sizes}: cheap (no file is read)."""
    files = _walk_files(Path(root), exclude)
    h = hashlib.sha256()
    for rel, size in files:
        h.update(f"{rel}\t{size}\n".encode())
    return {"files": len(files), "listing_sha256": h.hexdigest()}


def data_root(layout: str | None, data: str | Path) -> Path:
    """The folder a task of `layout` reads under --data (pretraining: None, the folder `mae_core.data.pretrain_folder`
    reads)."""
    import importlib
    if layout is None:
        from mae_core.data import pretrain_folder
        return pretrain_folder(data)
    module = _RESOLVERS.get(layout)
    if module is None:
        return Path(data)
    return importlib.import_module(module).resolve_root(data)[0]


def init_identity(init: str | None, arch: str | None, keep: bool = False) -> dict:
    """{"kind", "sha256" (None for scratch or a missing file, which the loader then names), "arch"}; `keep`: the
    run loads the checkpoint next, so the bytes read for the hash are kept for the loader (one read per run)."""
    if init is None:
        return {"kind": "none", "sha256": None, "arch": arch}
    from transfer.encoder import parse_init
    spec = parse_init(init)
    sha = file_sha256(spec.path, keep) if spec.path and os.path.exists(spec.path) else None
    return {"kind": spec.kind, "sha256": sha, "arch": arch}


def run_identity(*, task: str, recipe: str, init: str | None, arch: str | None, data: str | Path,
                 layout: str | None, out: str | Path, options: dict | None = None) -> dict:
    """The identity of a run about to start (RUN/identity.json's content)."""
    root = data_root(layout, data)
    opts = {}
    for key, value in sorted((options or {}).items()):
        # a trained model given to --eval-only is known by its bytes, as the init is
        opts[key] = file_sha256(value) if key == "weights" and value and os.path.exists(value) else value
    return {"task": task, "recipe_sha256": hashlib.sha256(recipe.encode()).hexdigest(),
            # an --eval-only run builds its model from --weights and never loads the init: nothing kept for it
            "init": init_identity(init, arch, keep=not opts.get("eval_only")),
            "data": {"root": os.path.realpath(root),
                     **listing_fingerprint(root, exclude=(os.path.realpath(out),))},
            "options": opts}


def _init_words(init: dict) -> str:
    if init.get("kind") == "scratch":
        return f"scratch ({init.get('arch')})" if init.get("arch") else "scratch"
    sha = init.get("sha256")
    return f"{init.get('kind')} checkpoint sha256 {sha[:12]}.." if sha else f"{init.get('kind')} (no checkpoint file)"


def difference(old: dict, new: dict) -> str | None:
    """The first way two identities differ, in words ("init is ... there; this run's init is ..."), or None."""
    if old.get("task") != new.get("task"):
        return f"a run of task {old.get('task')}; this run's task is {new.get('task')}"
    o_init, n_init = old.get("init") or {}, new.get("init") or {}
    if (o_init.get("kind"), o_init.get("sha256")) != (n_init.get("kind"), n_init.get("sha256")) or (
            n_init.get("kind") == "scratch" and o_init.get("arch") != n_init.get("arch")):
        return f"a run of init {_init_words(o_init)}; this run's init is {_init_words(n_init)}"
    o_data, n_data = old.get("data") or {}, new.get("data") or {}
    if o_data.get("root") != n_data.get("root"):
        return f"a run on data {o_data.get('root')}; this run's data is {n_data.get('root')}"
    if o_data.get("listing_sha256") != n_data.get("listing_sha256"):
        return (f"a run on data {o_data.get('root')} as it was listed then ({o_data.get('files')} files); its "
                f"listing differs now ({n_data.get('files')} files: files added, removed or resized)")
    if old.get("options") != new.get("options"):
        return f"a run with options {old.get('options')}; this run's options are {new.get('options')}"
    if old.get("recipe_sha256") != new.get("recipe_sha256"):
        return "a run made with another recipe"
    return None


def check_identity(out: Path, stored: dict | None, new: dict) -> None:
    """Raise when the run folder `out`, holding a finished or resumable run of identity `stored`, is given a run of
    another identity."""
    if stored is None:
        return
    what = difference(stored, new)
    if what:
        raise MaeBenchError(f"{out} holds {what}; choose another --out, or repeat that run's settings to continue it")
