"""`ade20k_seg`: UperNet on a ViT from any checkpoint, trained on the shared engine (AdamW with layer-wise
lr decay, linear warm-up then poly decay per iteration), evaluated as mmsegmentation does."""
import json
from pathlib import Path

import torch.nn as nn
from timm.scheduler import PolyLRScheduler
from torch.utils.data import DataLoader

from mae_core.atomic import atomic_write
from mae_core.cpu_linear import select_cpu_linear
from mae_core.distributed import DistInfo
from mae_core.engine import adamw
from mae_core.hooks import Counter, PeriodicEval
from mae_core.runner import Trained, Training, run
from mae_core.errors import MaeBenchError
from mae_core.threads import worker_init
from results.evidence import SEG_COUNTS_FILE, write_seg_counts
from transfer.leakage import count_leakage
from transfer.encoder import init_encoder, refuse_variants

from .backbone import ViTBackbone
from .data import ADE20KDataset, EpochSampler, read_num_classes, resolve_root
from .evaluate import evaluate_segmenter
from .model import Segmenter, total_loss


def build_segmenter(model_cfg: dict, crop: int, init: str, arch: str | None,
                    num_classes: int) -> tuple[Segmenter, dict]:
    """The segmenter of the recipe's `model` section on the encoder `init` (pos_embed resized to the crop), and
    init info."""
    vit, info = init_encoder(init, arch=arch, img_size=crop, num_classes=0, global_pool="token",
                             drop_path_rate=model_cfg["drop_path"], num_heads=model_cfg.get("num_heads"))
    refuse_variants(info, "UperNet (ade20k_seg)")
    vit.norm = nn.Identity()  # features are taken inside the trunk (mmseg's MAE: final_norm=False)
    backbone = ViTBackbone(vit, model_cfg["out_indices"], model_cfg["rel_pos_bias"], model_cfg["layer_scale_init"])
    model = Segmenter(backbone, num_classes, model_cfg["channels"], model_cfg["aux_channels"],
                      tuple(model_cfg["pool_scales"]), model_cfg["dropout"], model_cfg["aux_weight"])
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


def _build(cfg, init, arch, data, out: Path, resume, eval_only, weights, save_preds, dist: DistInfo) -> Training | dict:
    """The segmenter's training, or with eval_only the result of evaluating `weights`."""
    data_cfg = cfg["data"]
    root, name = resolve_root(data)
    num_classes = read_num_classes(root)
    val_set = ADE20KDataset(root, "val", data_cfg, num_classes, train=False, subset=data_cfg["val_subset"],
                            run_dir=out)
    preds_dir = out / "preds" if save_preds else None  # every process writes the maps of its own shard
    dataset = {"name": name, "root": str(root), "split": "val", "subset": data_cfg["subset"],
               "val_subset": data_cfg["val_subset"], "num_classes": num_classes, "val_images": len(val_set)}
    if eval_only:
        trained = Trained(weights, cfg["task"], cfg, dist)
        conf, model_cfg = trained.config, trained.cfg["model"]
        if conf.get("num_classes") != num_classes:
            raise MaeBenchError(f"{weights} predicts {conf.get('num_classes')} classes but the data set has "
                                f"{num_classes}")
        model, _ = build_segmenter(model_cfg, model_cfg["img_size"], "scratch", conf["arch"], num_classes)
        info = trained.load(model, conf.get("init") or {"kind": "scratch", "ckpt": None}, "its own recipe's segmenter")
        model.to(dist.device)
        res = evaluate_segmenter(model, val_set, dist, cfg["test"], num_classes, preds_dir=preds_dir,
                                 num_workers=data_cfg["num_workers"], keep=True)
        return _result(res, info, dataset, out, dist, val_set)
    train_set = ADE20KDataset(root, "train", data_cfg, num_classes, train=True, subset=data_cfg["subset"],
                              crop=cfg["model"]["img_size"], run_dir=out)
    dataset["train_images"] = len(train_set)
    dataset["val_duplicates_of_train"] = count_leakage([p for p, _ in train_set.pairs], [p for p, _ in val_set.pairs],
                                                       root, out)
    return _training(cfg, init, arch, train_set, val_set, num_classes, root, out, resume, preds_dir, dataset, dist)


def _result(res: dict, info: dict, dataset: dict, out: Path, dist: DistInfo, val_set: ADE20KDataset) -> dict:
    """The task's result from an evaluation's `res`; RUN/per_class.json and RUN/seg_counts.csv beside it."""
    _write_per_class(out, res, dist)
    if dist.is_main and "image_counts" in res:  # per-image areas, for paired comparisons
        rows = res["image_counts"]
        write_seg_counts(out / SEG_COUNTS_FILE, [val_set.name(i) for i in range(len(val_set))], rows.numpy())
    return {"metrics": _main_metrics(res), "init": info, "arch": info.get("arch", "?"), "device": dist.device,
            "dataset": dataset}


class SegEval:
    """`evaluate_segmenter(epoch, last) -> stats`: mIoU, mAcc, aAcc on val (the last evaluation writes its label maps to
    `preds_dir` with --save-preds); the full result of the latest (per-class IoU and Acc) stays in `result`."""

    def __init__(self, model, val_set, cfg: dict, num_classes: int, preds_dir, dist: DistInfo):
        self.model, self.val_set, self.cfg, self.num_classes = model, val_set, cfg, num_classes
        self.preds_dir, self.dist = preds_dir, dist
        self.result: dict = {}

    def __call__(self, epoch: int, last: bool) -> dict:
        schedule = self.cfg["schedule"]
        self.result = evaluate_segmenter(self.model, self.val_set, self.dist, self.cfg["test"], self.num_classes,
                               preds_dir=self.preds_dir if last else None, num_workers=self.cfg["data"]["num_workers"],
                               keep=last)
        stats = _main_metrics(self.result)
        if self.dist.is_main:
            print(f"iter {(epoch + 1) * schedule['eval_interval']}/{schedule['iters']}: mIoU {stats['mIoU']:.2f} "
                  f"mAcc {stats['mAcc']:.2f} aAcc {stats['aAcc']:.2f}")
        return stats


def _training(cfg, init, arch, train_set, val_set, num_classes: int, root, out: Path, resume, preds_dir, dataset: dict,
              dist: DistInfo) -> Training:
    """The segmenter's training, iteration-based: `iters` updates, a checkpoint and (every runtime.eval_every-th)
    an evaluation every `eval_interval` of them, so the engine's epoch is that interval (mmengine's
    IterBasedTrainLoop); its result is the last evaluation's."""
    data_cfg, model_cfg, optim = cfg["data"], cfg["model"], cfg["optim"]
    schedule, runtime = cfg["schedule"], cfg["runtime"]
    model, info = build_segmenter(model_cfg, model_cfg["img_size"], init, arch, num_classes)
    model.to(dist.device)
    linear = select_cpu_linear(model, runtime, dist.device, out, resume)
    if schedule["iters"] < 1 or schedule["eval_interval"] < 1 or schedule["iters"] % schedule["eval_interval"]:
        raise MaeBenchError(f"schedule.iters ({schedule['iters']}) must be a positive multiple of "
                            f"schedule.eval_interval ({schedule['eval_interval']})")
    optimizer = adamw(model.param_groups(optim["weight_decay"], optim["layer_decay"]), lr=optim["lr"],
                      betas=optim["betas"])
    scheduler = poly_schedule(optimizer, schedule["iters"], schedule["warmup_iters"], optim["power"], optim["min_lr"],
                              optim["warmup_ratio"], optim["lr"])
    if dist.enabled and runtime["sync_bn"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    config = {"task": cfg["task"], "arch": info["arch"], "num_classes": num_classes, "init": info, "recipe": cfg}
    skipped = Counter("skipped_samples")  # training samples skipped as unreadable, counted over a resume too
    val = SegEval(model, val_set, cfg, num_classes, preds_dir, dist)
    per_rank, per_epoch = schedule["batch_size"], schedule["eval_interval"]

    def loader(epoch):
        sampler = EpochSampler(len(train_set), per_epoch * per_rank, runtime["seed"], epoch, dist.rank,
                               dist.world_size)
        return DataLoader(train_set, batch_size=per_rank, sampler=sampler, drop_last=True,
                          num_workers=data_cfg["num_workers"], pin_memory=dist.device.startswith("cuda"),
                          persistent_workers=False,
                          worker_init_fn=worker_init)  # one torch thread per worker

    def step(net, batch):
        x, y, ok = batch
        skipped.add(int((~ok).sum()))
        x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
        logits, aux = net(x)
        return total_loss(logits, aux, y, model.aux_weight, model_cfg["avg_non_ignore"]), len(y)

    def start(engine):
        if dist.is_main:
            print(f"{cfg['task']}: {info['kind']} {info['arch']} on {len(train_set)} train / {len(val_set)} val "
                  f"images ({num_classes} classes, {root}); {schedule['iters']} iterations of batch {per_rank} x "
                  f"{dist.world_size}, lr {optim['lr']:.3g}, layer decay {optim['layer_decay']}")

    def finish(stats: dict) -> dict:
        return _result(val.result, info, {**dataset, "skipped_samples": skipped.value}, out, dist, val_set)

    return Training(model, optimizer, scheduler, schedule["iters"], schedule["eval_interval"], loader, step, finish,
                    hooks=[PeriodicEval(val, runtime["eval_every"]), skipped], config=config, desc=cfg["task"],
                    notes=[linear], start=start, save_final=True)


def _main_metrics(res: dict) -> dict:
    return {k: float(res[k]) for k in ("mIoU", "mAcc", "aAcc")}


def _write_per_class(out: Path, res: dict, dist: DistInfo) -> None:
    if dist.is_main and res:
        text = json.dumps({"IoU": res["IoU"], "Acc": res["Acc"]}, allow_nan=True)
        atomic_write(out / "per_class.json", lambda tmp: Path(tmp).write_text(text))
