"""`mae-bench demo`: the main job on synthetic data, start to finish: scenes, the `ci` suite, tables."""
import json
import time
from pathlib import Path

from transfer import synth
from .config import load_recipe
from .orchestration.suite import DataPaths, run_suite


def scenes_match(data: Path, suite) -> bool:
    """Whether `data` holds the scenes this suite asks for (generator version, counts, size, seed); scenes of an
    older generator or another size are regenerated, not reused."""
    try:
        meta = json.loads((data / "synth.json").read_text())
    except (OSError, ValueError):
        return False
    want = {"version": synth.VERSION, "n_train": suite.synth.n_train, "n_val": suite.synth.n_val,
            "img_size": suite.img_size, "seed": suite.seed}
    return isinstance(meta, dict) and all(meta.get(k) == v for k, v in want.items())


def demo(cfg, out: str | Path) -> dict:
    """Generate the scenes, run the suite on them; returns the suite's result with the output paths."""
    out = Path(out)
    t0 = time.time()
    suite = load_recipe("suite", cfg.suite, dict(cfg.suite_overrides))
    data = out / "data"
    if scenes_match(data, suite):
        print(f"synthetic scenes already in {data}")
    else:
        print(f"synthetic scenes ({suite.synth.n_train} train / {suite.synth.n_val} val, {suite.img_size} px) -> {data}")
        synth.generate(data, n_train=suite.synth.n_train, n_val=suite.synth.n_val, img_size=suite.img_size,
                       seed=suite.seed)
    result = run_suite(suite, DataPaths.from_root(data), out / "suite")
    tables = out / "suite" / "tables"
    result["paths"] = {"data": data, "tables": tables, "reconstructions": out / "suite" / "pretrain" / "reconstructions.png",
                       "runs": out / "suite"}
    print(f"demo finished in {time.time() - t0:.0f}s")
    for name, path in result["paths"].items():
        print(f"  {name:16s} {path}")
    return result
