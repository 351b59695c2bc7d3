"""`ade20k_seg`: UperNet on a ViT from any checkpoint, trained on the shared engine (AdamW with layer-wise
lr decay, linear warm-up then poly decay per iteration), evaluated as mmsegmentation does."""
import json
from pathlib import Path

import torch.nn as nn
from timm.scheduler import PolyLRScheduler
from torch.utils.data import DataLoader

from mae_core.atomic import atomic_write
from mae_core.checkpoint import load_strict
from mae_core.cpu_linear import select_cpu_linear
from mae_core.distributed import DistInfo
from mae_core.engine import adamw
from mae_core.hooks import Counter, PeriodicEval
from mae_core.runner import Training, read_trained, run
from mae_core.errors import MaeBenchError
from mae_core.threads import worker_init
from transfer.encoder import init_encoder

from .backbone import ViTBackbone
from .data import ADE20KDataset, EpochSampler, read_num_classes, resolve_root
from .evaluate import evaluate_segmenter
from .model import Segmenter, total_loss


def build_segmenter(m: dict, crop: int, init: str, arch: str | None, num_classes: int) -> tuple[Segmenter, dict]:
    """The segmenter of recipe section `m` on the encoder `init` (pos_embed resized to the crop), and init info."""
    vit, info = init_encoder(init, arch=arch, img_size=crop, num_classes=0, global_pool="token",
                             drop_path_rate=m["drop_path"])
    vit.norm = nn.Identity()  # features are taken inside the trunk (mmseg's MAE: final_norm=False)
    backbone = ViTBackbone(vit, m["out_indices"], m["rel_pos_bias"], m["layer_scale_init"])
    model = Segmenter(backbone, num_classes, m["channels"], m["aux_channels"], tuple(m["pool_scales"]), m["dropout"],
                      m["aux_weight"])
    return model, info


def poly_schedule(optimizer, total: int, warmup: int, power: float, min_lr: float, warmup_ratio: float, lr: float):
    """mmseg's LinearLR(start_factor=warmup_ratio) for `warmup` iterations, then PolyLR(power, eta_min=min_lr)."""
    warmup = min(warmup, max(0, total - 1))
    return PolyLRScheduler(optimizer, t_initial=max(1, total - warmup), power=power, lr_min=min_lr, warmup_t=warmup,
                           warmup_lr_init=lr * warmup_ratio, warmup_prefix=True, t_in_epochs=False)


def run_segmentation(cfg: dict, *, init: str, arch: str | None, data: str, out: str, resume: str | None = None,
                     eval_only: bool = False, weights: str | None = None, save_preds: bool = False) -> dict:
    """Train (or, with eval_only, only evaluate `weights`) and return {"metrics", "init", "arch", "dataset", "device"}.
    run_task checks that eval_only and weights come together."""
    out = Path(out)
    return run(cfg, lambda dist: _build(cfg, init, arch, data, out, resume, eval_only, weights, save_preds, dist),
               out=out, resume=resume)


def _load_trained(weights: str, num_classes: int, task: str) -> tuple[Segmenter, dict, dict]:
    ckpt = read_trained(weights, task)
    conf = ckpt["config"]
    if conf["num_classes"] != num_classes:
        raise MaeBenchError(f"{weights} predicts {conf['num_classes']} classes but the data set has {num_classes}")
    recipe = conf["recipe"]
    model, _ = build_segmenter(recipe["model"], recipe["model"]["img_size"], "scratch", conf["arch"], num_classes)
    load_strict(model, ckpt["model"], weights, "its own recipe's segmenter")
    info = dict(conf.get("init") or {"kind": "scratch", "ckpt": None}, weights=str(weights))
    return model, info, recipe


def _build(cfg, init, arch, data, out: Path, resume, eval_only, weights, save_preds, dist: DistInfo) -> Training | dict:
    """The segmenter's training, or with eval_only the result of evaluating `weights`."""
    d = cfg["data"]
    root, name = resolve_root(data)
    num_classes = read_num_classes(root)
    val_set = ADE20KDataset(root, "val", d, num_classes, train=False, subset=d["val_subset"])
    preds_dir = out / "preds" if save_preds else None  # every process writes the maps of its own shard
    dataset = {"name": name, "root": str(root), "split": "val", "subset": d["subset"], "val_subset": d["val_subset"],
               "num_classes": num_classes, "val_images": len(val_set)}
    if eval_only:
        model, info, _ = _load_trained(weights, num_classes, cfg["task"])
        model.to(dist.device)
        res = evaluate_segmenter(model, val_set, dist, cfg["test"], num_classes, preds_dir=preds_dir, num_workers=d["num_workers"])
        return _result(res, info, dataset, out, dist)
    train_set = ADE20KDataset(root, "train", d, num_classes, train=True, subset=d["subset"],
                              crop=cfg["model"]["img_size"])
    dataset["train_images"] = len(train_set)
    return _training(cfg, init, arch, train_set, val_set, num_classes, root, out, resume, preds_dir, dataset, dist)


def _result(res: dict, info: dict, dataset: dict, out: Path, dist: DistInfo) -> dict:
    """The task's result from an evaluation's `res`; RUN/per_class.json beside it."""
    _write_per_class(out, res, dist)
    return {"metrics": _main_metrics(res), "init": info, "arch": info.get("arch", "?"), "device": dist.device,
            "dataset": dataset}


class SegEval:
    """`evaluate_segmenter(epoch, last) -> stats`: mIoU, mAcc, aAcc on val (the last evaluation writes its label maps to
    `preds_dir` with --save-preds); the full result of the latest (per-class IoU and Acc) stays in `result`."""

    def __init__(self, model, val_set, cfg: dict, num_classes: int, preds_dir, skipped: Counter, dist: DistInfo):
        self.model, self.val_set, self.cfg, self.num_classes = model, val_set, cfg, num_classes
        self.preds_dir, self.skipped, self.dist = preds_dir, skipped, dist
        self.result: dict = {}

    def __call__(self, epoch: int, last: bool) -> dict:
        s = self.cfg["schedule"]
        self.result = evaluate_segmenter(self.model, self.val_set, self.dist, self.cfg["test"], self.num_classes,
                               preds_dir=self.preds_dir if last else None, num_workers=self.cfg["data"]["num_workers"])
        stats = _main_metrics(self.result)
        if self.skipped.value:
            stats["skipped_samples"] = self.skipped.value
        if self.dist.is_main:
            print(f"iter {(epoch + 1) * s['eval_interval']}/{s['iters']}: mIoU {stats['mIoU']:.2f} "
                  f"mAcc {stats['mAcc']:.2f} aAcc {stats['aAcc']:.2f}")
        return stats


def _training(cfg, init, arch, train_set, val_set, num_classes: int, root, out: Path, resume, preds_dir, dataset: dict,
              dist: DistInfo) -> Training:
    """The segmenter's training, iteration-based: `iters` updates, a checkpoint and (every runtime.eval_every-th)
    an evaluation every `eval_interval` of them, so the engine's epoch is that interval (mmengine's
    IterBasedTrainLoop); its result is the last evaluation's."""
    d, s, r, m, o = cfg["data"], cfg["schedule"], cfg["runtime"], cfg["model"], cfg["optim"]
    model, info = build_segmenter(m, m["img_size"], init, arch, num_classes)
    model.to(dist.device)
    linear = select_cpu_linear(model, r, dist.device, out, resume)
    if s["iters"] < 1 or s["eval_interval"] < 1 or s["iters"] % s["eval_interval"]:
        raise MaeBenchError(f"schedule.iters ({s['iters']}) must be a positive multiple of schedule.eval_interval ({s['eval_interval']})")
    optimizer = adamw(model.param_groups(o["weight_decay"], o["layer_decay"]), lr=o["lr"], betas=o["betas"])
    scheduler = poly_schedule(optimizer, s["iters"], s["warmup_iters"], o["power"], o["min_lr"], o["warmup_ratio"],
                              o["lr"])
    if dist.enabled and r["sync_bn"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    config = {"task": cfg["task"], "arch": info["arch"], "num_classes": num_classes, "init": info, "recipe": cfg}
    skipped = Counter("skipped_samples")  # training samples skipped as unreadable, counted over a resume too
    val = SegEval(model, val_set, cfg, num_classes, preds_dir, skipped, dist)
    per_rank, per_epoch = s["batch_size"], s["eval_interval"]

    def loader(epoch):
        sampler = EpochSampler(len(train_set), per_epoch * per_rank, r["seed"], epoch, dist.rank, dist.world_size)
        return DataLoader(train_set, batch_size=per_rank, sampler=sampler, drop_last=True, num_workers=d["num_workers"],
                          pin_memory=dist.device.startswith("cuda"), persistent_workers=False,
                          worker_init_fn=worker_init)  # one torch thread per worker

    def step(net, batch):
        x, y, ok = batch
        skipped.add(int((~ok).sum()))
        x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
        logits, aux = net(x)
        return total_loss(logits, aux, y, model.aux_weight, m["avg_non_ignore"]), len(y)

    def start(engine):
        if dist.is_main:
            print(f"{cfg['task']}: {info['kind']} {info['arch']} on {len(train_set)} train / {len(val_set)} val "
                  f"images ({num_classes} classes, {root}); {s['iters']} iterations of batch {per_rank} x "
                  f"{dist.world_size}, lr {o['lr']:.3g}, layer decay {o['layer_decay']}")

    def finish(stats: dict) -> dict:
        return _result(val.result, info, {**dataset, "skipped_samples": skipped.value}, out, dist)

    return Training(model, optimizer, scheduler, s["iters"], s["eval_interval"], loader, step, finish,
                    hooks=[skipped, PeriodicEval(val, r["eval_every"])], config=config, desc=cfg["task"],
                    notes=[linear], start=start, save_final=True)


def _main_metrics(res: dict) -> dict:
    return {k: float(res[k]) for k in ("mIoU", "mAcc", "aAcc")}


def _write_per_class(out: Path, res: dict, dist: DistInfo) -> None:
    if dist.is_main and res:
        text = json.dumps({"IoU": res["IoU"], "Acc": res["Acc"]}, allow_nan=True)
        atomic_write(out / "per_class.json", lambda tmp: Path(tmp).write_text(text))
