"""`mae-bench demo`: the main job on synthetic data, start to finish."""
import time
from pathlib import Path

from mae_core.pretrain import pretrain

from . import synth
from .config import load_recipe, resolved, save_recipe


def demo(cfg, out: str | Path) -> dict:
    """Generate the scenes, pretrain a tiny MAE on them, draw its reconstructions; returns the paths."""
    out = Path(out)
    t0 = time.time()
    s = load_recipe("synth", cfg.synth_recipe)
    print(f"[1/2] synthetic scenes -> {out / 'data'}")
    synth.generate(out / "data", n_train=s.n_train, n_val=s.n_val, img_size=s.img_size, seed=s.seed)
    p = load_recipe("pretrain", cfg.pretrain_recipe, dict(cfg.pretrain_overrides))
    run = out / "pretrain"
    print(f"[2/2] MAE pretraining ({p.model.arch}, {p.schedule.epochs} epochs) -> {run}")
    save_recipe(p, run)
    stats = pretrain(resolved(p), str(out / "data" / "imagenet" / "train"), str(run), resume="auto",
                     device=p.runtime.device)
    paths = {"data": out / "data", "checkpoint": run / "checkpoint-last.pth", "log": run / "log.jsonl",
             "reconstructions": run / "reconstructions.png"}
    print(f"demo finished in {time.time() - t0:.0f}s; final pretraining loss {stats.get('loss', float('nan')):.4f}")
    for name, path in paths.items():
        print(f"  {name:16s} {path}")
    return paths
