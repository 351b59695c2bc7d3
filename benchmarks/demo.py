"""`mae-bench demo`: the main job on synthetic data, start to finish: scenes, the `ci` suite, tables."""
import time
from pathlib import Path

from . import synth
from .config import load_recipe
from .suite import DataPaths, run_suite


def demo(cfg, out: str | Path) -> dict:
    """Generate the scenes, run the suite on them; returns the suite's result with the output paths."""
    out = Path(out)
    t0 = time.time()
    suite = load_recipe("suite", cfg.suite, dict(cfg.suite_overrides))
    data = out / "data"
    if (data / "synth.json").exists():
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
