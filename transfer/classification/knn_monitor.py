"""Pretraining's k-NN monitor, and the `pretrain` task's runner that adds it to mae_core's pretraining.

As lightly's `KNNCallback` and DINO's `eval_knn.py` during training: every `monitor.knn_every` epochs and
the last, the weighted k-NN top-1 / top-5 of the encoder being pretrained on a labelled split (this package's
`knn` rule and feature extraction, the `knn` task's numbers for the checkpoint of that epoch), logged as
`knn_top1` / `knn_top5` in the epoch's `log.jsonl` record and drawn below the loss in RUN/monitor.png, so a
pretraining that stops learning representations shows while it runs. Off (`knn_every=0`, the default) the
runner is `mae_core.pretrain.run_pretrain` unchanged.
"""
import os
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mae_core.curves import epoch_records, plot_epochs
from mae_core.data import pretrain_folder
from mae_core.engine import Engine
from mae_core.errors import MaeBenchError
from mae_core.hooks import PeriodicEval
from mae_core.pretrain import check_start, run_pretrain
from mae_core.weights import encoder_state_dict, fit_encoder
from transfer.encoder import build_vit

from .data import ImageFolderDataset, check_same_classes, check_splits, eval_transform, resolve_root
from .features import extract_features
from .knn import knn_accuracy

PLOT_FILE = "monitor.png"
METRICS = ("knn_top1", "knn_top5")
_FRESH_FC_NORM = {"fc_norm.weight", "fc_norm.bias"}  # avg pooling's fc_norm starts fresh, as in the knn task


def run_pretrain_monitored(cfg: dict, *, init: str, arch: str | None, data: str, out: str,
                           resume: str | None = None) -> dict:
    """The `pretrain` task's runner: MAE pretraining (`mae_core.pretrain.run_pretrain`), with the k-NN monitor as
    an engine hook when `monitor.knn_every` > 0 (its data and settings checked before any work). The result
    record then also holds the last monitored `knn_top1` / `knn_top5` and, under dataset.knn_monitor, the
    monitor's split."""
    every = (cfg.get("monitor") or {}).get("knn_every") or 0
    if not every:
        return run_pretrain(cfg, init=init, arch=arch, data=data, out=out, resume=resume)
    check_start(cfg, init, arch)
    monitor = KnnMonitor.from_recipe(cfg, data, out)
    res = run_pretrain(cfg, init=init, arch=arch, data=data, out=out, resume=resume, hooks=[monitor])
    if int(os.environ.get("RANK", "0")) == 0:  # only rank 0 returns the record's parts
        logged = [r for r in epoch_records(Path(out) / "log.jsonl") if all(m in r for m in METRICS)]
        if logged:  # the last epoch is always monitored; a resumed finished run reads it back
            res["metrics"].update({m: logged[-1][m] for m in METRICS})
        res["dataset"]["knn_monitor"] = monitor.facts
    return res


def monitor_root(mon: dict, data: str) -> tuple[Path, str, str]:
    """(ImageFolder root with train/ and val/, its name, where it came from): `monitor.knn_data`, else the root
    above the train/ folder pretraining reads (`mae_core.data.pretrain_folder`: DATA/train, DATA/imagenet/train,
    or DATA itself when it is a root's train/)."""
    if mon["knn_data"] is not None:
        if not isinstance(mon["knn_data"], str) or not Path(mon["knn_data"]).is_dir():
            raise MaeBenchError(f"monitor.knn_data={mon['knn_data']!r} is not a folder")
        root, name = resolve_root(mon["knn_data"])
        where = f"monitor.knn_data ({mon['knn_data']})"
    else:
        folder = pretrain_folder(data)
        root, name = resolve_root(folder.parent if folder.name == "train" else folder)
        where = f"--data {data} (monitor.knn_data=None: the root of the train/ that pretraining reads)"
    if not ((root / "train").is_dir() and (root / "val").is_dir()):
        raise MaeBenchError(f"the k-NN monitor (monitor.knn_every > 0) needs labelled images: {where} has no "
                            f"train/ and val/ class folders; set monitor.knn_data to an ImageFolder root")
    return root, name, where


@contextmanager
def _leave_training_as_found(device: str):
    """The monitor changes nothing the training reads: the torch (CPU and this CUDA device), numpy and Python
    random streams are restored after it, and while it runs fp32 matmuls use no TF32 (pretraining enables it on
    GPU; the knn task computes without it)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    cuda = device.startswith("cuda")
    devices = [torch.device(device).index if torch.device(device).index is not None
               else torch.cuda.current_device()] if cuda else []
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        with torch.random.fork_rng(devices=devices):
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        random.setstate(py_state)
        np.random.set_state(np_state)


class KnnMonitor(PeriodicEval):
    """After every `every`-th epoch and the last (rank 0 alone; other ranks wait at the engine's end-of-epoch
    barrier): the encoder's weights copied into the timm ViT the `knn` task builds from a checkpoint (eval mode,
    no masking, fp32; the model being trained is not touched), features of the train/ and val/ images through
    the evaluation transform, DINO's weighted k-NN. Adds `knn_top1`, `knn_top5`, `knn_s` (and `knn_skipped`,
    unreadable images left out) to the epoch's stats, which the engine logs, then redraws RUN/monitor.png."""

    def __init__(self, train_set: ImageFolderDataset, val_set: ImageFolderDataset, *, arch: str, img_size: int,
                 global_pool: str, k: int, temperature: float, every: int, batch_size: int, workers: int,
                 facts: dict):
        self.train_set, self.val_set = train_set, val_set
        self.arch, self.img_size, self.global_pool = arch, img_size, global_pool
        self.k, self.temperature = k, temperature
        self.batch_size, self.workers, self.facts = batch_size, workers, facts
        super().__init__(self._evaluate, every)
        self._engine: Engine | None = None  # the engine of the epoch being evaluated (rank 0)

    @classmethod
    def from_recipe(cls, cfg: dict, data: str, out: str) -> "KnnMonitor":
        """The monitor the recipe's `monitor` section describes, its split read and checked (classes alike in
        both splits, k within the training images, validation images duplicating training ones counted)."""
        mon, model_cfg = cfg["monitor"], cfg["model"]
        root, name, where = monitor_root(mon, data)
        size = model_cfg["img_size"]
        transform = eval_transform(size)  # the knn task's default crop_pct
        sets = [ImageFolderDataset(root, split, transform, subset=mon[key], subset_mode="total", strict=False,
                                   img_size=size)
                for split, key in (("train", "knn_train_subset"), ("val", "knn_val_subset"))]
        check_same_classes(*sets)
        k = mon["knn_k"]
        if not k <= len(sets[0]):
            raise MaeBenchError(f"monitor.knn_k={k} is more than the monitor's {len(sets[0])} training images "
                                f"({root / 'train'})")
        facts = {"name": name, "root": str(root), "global_pool": mon["knn_global_pool"], "k": k,
                 "temperature": mon["knn_temperature"], "every": mon["knn_every"], "num_classes": sets[0].num_classes,
                 "train_images": len(sets[0]), "val_images": len(sets[1]), **check_splits(*sets, out)}
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"knn monitor: every {mon['knn_every']} epochs and the last, {len(sets[0])} train / {len(sets[1])} "
                  f"val images of {where}, {sets[0].num_classes} classes, k={k}, T={mon['knn_temperature']}, "
                  f"global_pool={mon['knn_global_pool']}")
        return cls(*sets, arch=model_cfg["arch"], img_size=size, global_pool=mon["knn_global_pool"], k=k,
                   temperature=float(mon["knn_temperature"]), every=mon["knn_every"],
                   batch_size=cfg["schedule"]["batch_size"], workers=cfg["data"]["num_workers"], facts=facts)

    def after_epoch(self, engine: Engine, epoch: int, stats: dict) -> None:
        if not engine.dist.is_main:
            return
        log = engine.run_dir / "log.jsonl"
        if engine.start_epoch >= engine.epochs:  # a resumed finished run: its history is in log.jsonl already
            self.draw(epoch_records(log), engine.run_dir)
            return
        self._engine = engine
        super().after_epoch(engine, epoch, stats)  # PeriodicEval: every `every`-th epoch and the last
        if "knn_top1" not in stats:
            return
        print(f"knn monitor, epoch {epoch + 1}/{engine.epochs}: top1 {stats['knn_top1']:.2f} top5 "
              f"{stats['knn_top5']:.2f} ({stats['knn_s']:.1f} s)", file=sys.stderr, flush=True)
        # the engine logs this epoch after its hooks: the earlier epochs from the log, this one from its stats
        self.draw([r for r in epoch_records(log) if r["epoch"] < epoch] + [{"epoch": epoch, **stats}],
                  engine.run_dir)

    def _evaluate(self, epoch: int, last: bool) -> dict:
        device = self._engine.dist.device
        t0 = time.perf_counter()
        with _leave_training_as_found(device):
            metrics = self.measure(self._engine.module, device)
        return {**metrics, "knn_s": time.perf_counter() - t0}

    @torch.no_grad()
    def measure(self, mae: torch.nn.Module, device: str) -> dict:
        """k-NN top-1 / top-5 (percent) of `mae`'s encoder, as the `knn` task scores a checkpoint holding it."""
        encoder = build_vit(self.arch, self.img_size, num_classes=0, global_pool=self.global_pool).to(device)
        sd = encoder_state_dict(mae.state_dict())
        avg = self.global_pool == "avg"
        if avg:  # timm's avg-pool ViT has no final norm: the knn task leaves it out too
            sd = {k: v for k, v in sd.items() if not k.startswith("norm.")}
        fit_encoder(encoder.state_dict(), sd, "the model being pretrained", f"a {self.arch} encoder with "
                    f"global_pool={self.global_pool}", "mae", may_be_missing=_FRESH_FC_NORM if avg else ())
        encoder.load_state_dict(sd, strict=not avg)
        loaders = [DataLoader(ds, batch_size=self.batch_size, num_workers=self.workers,
                              pin_memory=device.startswith("cuda")) for ds in (self.train_set, self.val_set)]
        (tr_x, tr_y, tr_bad), (va_x, va_y, va_bad) = (extract_features(encoder, lo, device) for lo in loaders)
        if not 1 <= self.k <= len(tr_y):
            raise MaeBenchError(f"monitor.knn_k={self.k} is more than the {len(tr_y)} readable training images of "
                                f"the k-NN monitor")
        scores = knn_accuracy(tr_x.to(device), tr_y, va_x.to(device), va_y, self.k, self.temperature,
                              self.train_set.num_classes)
        metrics = {"knn_top1": scores["top1"], "knn_top5": scores["top5"]}
        if tr_bad + va_bad:
            metrics["knn_skipped"] = tr_bad + va_bad
        return metrics

    def draw(self, records: list[dict], run_dir: Path) -> None:
        """RUN/monitor.png: the loss and the k-NN top-1 per epoch."""
        plot_epochs(records, run_dir / PLOT_FILE, [("loss", "pretraining loss"), ("knn_top1", "k-NN top-1 (%)")],
                    title=f"{self.arch}: loss and k-NN top-1 (k={self.k}, {len(self.val_set)} val images, every "
                          f"{self.every} epochs and the last)")
