"""Planted regressions: does the `ci` suite's regression check catch a known bug, and stay quiet on clean runs?

Each plant puts one known bug into the pipeline (a patch applied in this process), re-runs the suite steps it can
affect (the others are taken, hard-linked, from a clean suite run) and checks the suite's result against the
baseline: caught when at least one metric of an affected step is named as a regression. False alarms: each clean
seed checked against a baseline made from the other seeds (`mae-bench baseline`'s rule), and any extra clean runs
(e.g. a demo) against the committed baseline.

    python -m tools.planted --clean S0 --seeds S0 S1 S2 --data-root D --out OUT [--plants a,b] [--extra RUN ...]
"""
import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from results.frame import load_records
from results.regression import find_regressions, key_task_init, load_baseline, make_baseline, scope_baseline

from benchmarks.config import load_recipe
from benchmarks.orchestration.suite import DataPaths, baseline_path, run_suite
from benchmarks.tasks import primary_metrics


@dataclass(frozen=True)
class Plant:
    name: str
    what: str
    affects: Callable[[str, str], bool]  # (task, init) -> the step must be re-run under the plant
    patch: Callable[[], contextlib.AbstractContextManager]
    pretraining: bool = False  # the MAE pretraining itself must be re-run (and so every MAE-init step)


@contextlib.contextmanager
def swapped(module_name: str, name: str, make: Callable) -> None:
    """Replace function `name` of `module_name` by `make(original)` in every loaded module that holds it."""
    module = __import__(module_name, fromlist=[name])
    original = getattr(module, name)
    holders = [m for m in list(sys.modules.values()) if getattr(m, name, None) is original]
    new = make(original)
    for m in holders:
        setattr(m, name, new)
    try:
        yield
    finally:
        for m in holders:
            setattr(m, name, original)


def _encoder_weights(edit: Callable) -> Callable:
    def make(load_encoder):
        def patched(path, *, img_size, arch=None, **kwargs):
            sd, found = load_encoder(path, img_size=img_size, arch=arch, **kwargs)
            return edit(sd, found["arch"], img_size), found
        return patched
    return make


def _random_weights(sd, arch, img_size):
    from transfer.encoder import build_vit
    fresh = build_vit(arch, img_size, 0, "token", 0.0).state_dict()
    return {k: fresh.get(k, v) for k, v in sd.items()}


def _pos_zeroed(sd, arch, img_size):
    return {k: (v * 0 if k == "pos_embed" else v) for k, v in sd.items()}


def _shifted_categories(to_coco_results):
    def patched(output, image_id, cat_ids, *args, **kwargs):
        return to_coco_results(output, image_id, list(cat_ids[1:]) + list(cat_ids[:1]), *args, **kwargs)
    return patched


def _labels_not_reduced(reduce_zero_label):
    from transfer.synth import ADE_CLASSES
    k = len(ADE_CLASSES)  # the scenes' classes: unreduced ids 0..K, of which id K has no class left

    def patched(label):
        return np.where(label >= k, 255, label).astype(label.dtype)
    return patched


@contextlib.contextmanager
def _loss_on_visible():
    """MAE's loss averaged over the visible patches instead of the masked ones (a reconstruction of what the
    encoder saw: no masked-prediction task left)."""
    from mae_core.models_mae import MaskedAutoencoderViT
    original = MaskedAutoencoderViT.forward_loss
    MaskedAutoencoderViT.forward_loss = lambda self, imgs, pred, mask: original(self, imgs, pred, 1 - mask)
    try:
        yield
    finally:
        MaskedAutoencoderViT.forward_loss = original


def _inverted_decay(layer_decay_groups):
    def patched(model, layer_decay, depth, layer_id, weight_decay):
        return layer_decay_groups(model, layer_decay, depth, lambda name: depth + 1 - layer_id(name), weight_decay)
    return patched


def _with(module, name, make, *imports):
    def patch():
        for m in imports:
            __import__(m)
        return swapped(module, name, make)
    return patch


_TUNED = ("in1k_finetune", "in1k_partial", "coco_det", "ade20k_seg")  # the tasks that fine-tune with layer decay
_RUNNERS = ("transfer.classification.train", "transfer.classification.knn", "transfer.detection.train",
            "transfer.segmentation.train")
PLANTS = {p.name: p for p in [
    Plant("random_encoder", "the downstream task builds the encoder but never loads the MAE checkpoint's weights",
          lambda task, init: init == "mae",
          _with("transfer.encoder", "load_encoder", _encoder_weights(_random_weights), *_RUNNERS)),
    Plant("pos_embed_zeroed", "the encoder's position embeddings are zeroed when the MAE checkpoint is loaded",
          lambda task, init: init == "mae",
          _with("transfer.encoder", "load_encoder", _encoder_weights(_pos_zeroed), *_RUNNERS)),
    Plant("coco_category_shift", "COCO results are written with every category id shifted by one",
          lambda task, init: task == "coco_det",
          _with("transfer.detection.evaluate", "to_coco_results", _shifted_categories, "transfer.detection.train")),
    Plant("ade_reduce_zero_label_off", "ADE20K label maps are not reduced: 'other' (0) trains as class 0, every id off by one",
          lambda task, init: task == "ade20k_seg",
          _with("transfer.segmentation.data", "reduce_zero_label", _labels_not_reduced, "transfer.segmentation.train")),
    Plant("mae_loss_on_visible", "MAE pretraining puts its loss on the visible patches instead of the masked ones",
          lambda task, init: init == "mae", _loss_on_visible, pretraining=True),
    # every init fine-tunes with layer decay; re-running the MAE init's steps only (a third of the work) can only
    # under-count what is caught
    Plant("layer_decay_inverted", "layer-wise lr decay inverted: the patch embedding gets the full lr, the head the least",
          lambda task, init: task in _TUNED and init == "mae",
          _with("mae_core.param_groups", "layer_decay_groups", _inverted_decay, "transfer.classification.optim",
                "transfer.detection.model", "transfer.segmentation.model")),
]}


def _copy_clean(clean: Path, out: Path, plant: Plant) -> None:
    """`out` = the clean suite run (hard links) without the steps the plant affects and without the tables."""
    if out.exists():
        return
    def keep(folder, names):
        rel = Path(folder).relative_to(clean).parts
        drop = ({"tables"} | ({"pretrain"} if plant.pretraining else set())) if not rel else set()
        if len(rel) == 2 and rel[0] == "runs":  # runs/<task>/<init>
            drop |= {init for init in names if plant.affects(rel[1], init)}
        return drop
    shutil.copytree(clean, out, ignore=keep, copy_function=os.link)


def run_plant(plant: Plant, clean: Path, data: DataPaths, out: Path, baseline: Path) -> dict:
    folder = out / plant.name
    _copy_clean(clean, folder, plant)
    cfg = load_recipe("suite", "ci", {"baseline": str(baseline)})
    with plant.patch():
        result = run_suite(cfg, data, folder)
    named = [r.setting for r in result["regressions"]]
    caught = any(plant.affects(*key_task_init(key)) for key in named)
    return {"plant": plant.name, "what": plant.what, "caught": caught, "named": named}


def false_alarms(seeds: list[Path], extra: list[Path], baseline: Path, sigmas: float = 3.0, floor: float = 2.0):
    rows = []
    runs = {s: load_records(s / "runs") for s in seeds}
    for s in seeds:
        others = [r for o in seeds if o != s for r in runs[o]]
        base = make_baseline(others, floor, primary_metrics(), sigmas)
        regs = find_regressions(runs[s], base)
        rows.append({"run": f"{s.name} vs a baseline of the other {len(seeds) - 1} seeds", "alarms": [r.setting for r in regs]})
    committed = load_baseline(baseline) if extra else None
    for e in extra:  # checked on the inits it ran (the demo runs MAE and scratch only)
        records = load_records(e)
        regs = find_regressions(records, scope_baseline(committed, inits={rec["init"]["kind"] for _, rec in records}))
        rows.append({"run": f"{e} vs {baseline.name}", "alarms": [r.setting for r in regs]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", type=Path, required=True, help="a finished clean `ci` suite run (seed 0)")
    ap.add_argument("--seeds", type=Path, nargs="+", required=True, help="clean suite runs of several seeds")
    ap.add_argument("--extra", type=Path, nargs="*", default=[], help="more clean runs, checked against --baseline")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--baseline", type=Path, default=baseline_path("ci.json"))
    ap.add_argument("--plants", default=",".join(PLANTS))
    ap.add_argument("--floor", type=float, default=2.0,
                    help="the leave-one-out baselines' smallest tolerance (default 2, as ci.json was written)")
    args = ap.parse_args(argv)
    names = args.plants.split(",")
    unknown = [p for p in names if p not in PLANTS]
    if unknown:
        sys.exit(f"unknown plant {unknown[0]!r}; choose from {', '.join(PLANTS)}")
    data = DataPaths.from_root(args.data_root)
    print("| plant | what | caught | metrics named |\n|---|---|---|---|")
    caught = 0
    for name in names:
        row = run_plant(PLANTS[name], args.clean, data, args.out, args.baseline)
        caught += row["caught"]
        print(f"| {name} | {row['what']} | {'yes' if row['caught'] else 'NO'} | {', '.join(row['named']) or '-'} |",
              flush=True)
    print(f"\ncaught {caught} / {len(names)} planted\n\n| clean run | false alarms |\n|---|---|")
    rows = false_alarms(args.seeds, args.extra, args.baseline, floor=args.floor)
    for row in rows:
        print(f"| {row['run']} | {', '.join(row['alarms']) or 'none'} |")
    print(f"\nfalse alarms: {sum(bool(r['alarms']) for r in rows)} / {len(rows)} clean runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
