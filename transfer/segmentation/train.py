"""`ade20k_seg`: UperNet on a ViT from any checkpoint, trained on the shared engine (AdamW with layer-wise
lr decay, linear warm-up then poly decay per iteration), evaluated as mmsegmentation does."""
import json
from pathlib import Path

import torch.nn as nn
from timm.scheduler import PolyLRScheduler
from torch.utils.data import DataLoader

from mae_core.atomic import atomic_write
from mae_core.distributed import DistInfo
from mae_core.hooks import Counter, PeriodicEval
from mae_core.runner import Trained, run
from mae_core.trainer import Trainer
from mae_core.errors import MaeBenchError
from mae_core.threads import worker_init
from results.evidence import SEG_COUNTS_FILE, write_seg_counts
from transfer.leakage import count_leakage
from transfer.encoder import init_encoder

from .backbone import ViTBackbone, trained_arch
from .data import ADE20KDataset, EpochSampler, read_num_classes, resolve_root
from .evaluate import evaluate_segmenter
from .model import Segmenter, total_loss


def build_segmenter(model_cfg: dict, crop: int, init: str, arch: str | None,
                    num_classes: int) -> tuple[Segmenter, dict]:
    """The segmenter of the recipe's `model` section on the encoder `init` (pos_embed resized to the crop), and
    init info."""
    vit, info = init_encoder(init, arch=arch, img_size=crop, num_classes=0, global_pool=None,
                             drop_path_rate=model_cfg["drop_path"], num_heads=model_cfg.get("num_heads"))
    # every variant enters (backbone.py)
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
    return run(cfg, lambda dist: _build(cfg, init, arch, data, Path(out), resume, eval_only, weights, save_preds, dist))


def _build(cfg, init, arch, data, out: Path, resume, eval_only, weights, save_preds, dist: DistInfo) -> Trainer | dict:
    """The segmenter's trainer, or with eval_only the result of evaluating `weights`."""
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
        model, _ = build_segmenter(model_cfg, model_cfg["img_size"], "scratch", trained_arch(conf), num_classes)
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
    return SegmentationTrainer(cfg, dist, out, resume, init, arch, train_set, val_set, num_classes, root, preds_dir,
                               dataset).build()


def _result(res: dict, info: dict, dataset: dict, out: Path, dist: DistInfo, val_set: ADE20KDataset) -> dict:
    """The task's result from an evaluation's `res`; RUN/per_class.json and RUN/seg_counts.csv beside it."""
    _write_per_class(out, res, dist)
    if dist.is_main and "image_counts" in res:  # per-image areas, for paired comparisons
        rows = res["image_counts"]
        write_seg_counts(out / SEG_COUNTS_FILE, [val_set.name(i) for i in range(len(val_set))], rows.numpy())
    return {"metrics": _main_metrics(res), "init": info, "arch": info.get("arch", "?"), "device": dist.device,
            "dataset": dataset}


class SegmentationTrainer(Trainer):
    """The segmenter's training, iteration-based: `iters` updates, a checkpoint and (every runtime.eval_every-th)
    an evaluation every `eval_interval` of them, so the engine's epoch is that interval (mmengine's
    IterBasedTrainLoop); its result is the last evaluation's."""

    save_final = True

    def __init__(self, cfg: dict, dist: DistInfo, out, resume, init: str, arch: str | None, train_set, val_set,
                 num_classes: int, root: Path, preds_dir, dataset: dict):
        super().__init__(cfg, dist, out, resume, train_set)
        self.init, self.arch, self.val_set, self.num_classes, self.root = init, arch, val_set, num_classes, root
        self.preds_dir, self.dataset, self.desc, self.tested = preds_dir, dataset, cfg["task"], {}
        self.skipped = Counter("skipped_samples")  # training samples skipped as unreadable, counted over a resume too

    def build_model(self):
        model_cfg = self.cfg["model"]
        model, self.info = build_segmenter(model_cfg, model_cfg["img_size"], self.init, self.arch, self.num_classes)
        model.to(self.dist.device)
        sync = self.dist.enabled and self.cfg["runtime"]["sync_bn"]  # SyncBatchNorm keeps the parameters, in order
        return nn.SyncBatchNorm.convert_sync_batchnorm(model) if sync else model

    def plan(self):
        schedule = self.cfg["schedule"]
        if schedule["iters"] < 1 or schedule["eval_interval"] < 1 or schedule["iters"] % schedule["eval_interval"]:
            raise MaeBenchError(f"schedule.iters ({schedule['iters']}) must be a positive multiple of "
                                f"schedule.eval_interval ({schedule['eval_interval']})")
        return schedule["iters"], schedule["eval_interval"], schedule["batch_size"] * self.dist.world_size

    def base_lr(self):
        return self.cfg["optim"]["lr"]

    def param_groups(self):
        return self.model.param_groups(self.cfg["optim"]["weight_decay"], self.cfg["optim"]["layer_decay"])

    def build_lr_scheduler(self):
        optim = self.cfg["optim"]
        return poly_schedule(self.optimizer, self.total_updates, self.cfg["schedule"]["warmup_iters"], optim["power"],
                             optim["min_lr"], optim["warmup_ratio"], self.lr)

    def build_hooks(self):
        return [PeriodicEval(self.test, self.cfg["runtime"]["eval_every"]), self.skipped]

    def build_config(self):
        return {"task": self.cfg["task"], "arch": self.info["arch"], "num_classes": self.num_classes,
                "init": self.info, "recipe": self.cfg}

    def build_train_loader(self, epoch: int):
        per_rank, dist = self.cfg["schedule"]["batch_size"], self.dist
        sampler = EpochSampler(len(self.train_set), self.updates_per_epoch * per_rank, self.cfg["runtime"]["seed"],
                               epoch, dist.rank, dist.world_size)
        return DataLoader(self.train_set, batch_size=per_rank, sampler=sampler, drop_last=True,
                          num_workers=self.cfg["data"]["num_workers"], pin_memory=dist.device.startswith("cuda"),
                          persistent_workers=False, worker_init_fn=worker_init)  # one torch thread per worker

    def run_step(self, net, batch):
        x, y, ok = batch
        self.skipped.add(int((~ok).sum()))
        x, y = x.to(self.dist.device, non_blocking=True), y.to(self.dist.device, non_blocking=True)
        logits, aux = net(x)
        return total_loss(logits, aux, y, self.model.aux_weight, self.cfg["model"]["avg_non_ignore"]), len(y)

    def describe(self, engine):
        info, schedule, optim = self.info, self.cfg["schedule"], self.cfg["optim"]
        return (f"{self.cfg['task']}: {info['kind']} {info['arch']} on {len(self.train_set)} train / "
                f"{len(self.val_set)} val images ({self.num_classes} classes, {self.root}); {schedule['iters']} "
                f"iterations of batch {schedule['batch_size']} x {self.dist.world_size}, lr {optim['lr']:.3g}, "
                f"layer decay {optim['layer_decay']}")

    def test(self, epoch: int, last: bool) -> dict:
        """mIoU, mAcc, aAcc on val (the last evaluation writes its label maps to `preds_dir` with --save-preds); the
        full result of the latest (per-class IoU and Acc) stays in `tested`."""
        cfg, schedule = self.cfg, self.cfg["schedule"]
        self.tested = evaluate_segmenter(self.model, self.val_set, self.dist, cfg["test"], self.num_classes,
                                         preds_dir=self.preds_dir if last else None,
                                         num_workers=cfg["data"]["num_workers"], keep=last)
        stats = _main_metrics(self.tested)
        if self.dist.is_main:
            print(f"iter {(epoch + 1) * schedule['eval_interval']}/{schedule['iters']}: mIoU {stats['mIoU']:.2f} "
                  f"mAcc {stats['mAcc']:.2f} aAcc {stats['aAcc']:.2f}")
        return stats

    def finish(self, stats: dict) -> dict:
        return _result(self.tested, self.info, {**self.dataset, "skipped_samples": self.skipped.value}, self.out,
                       self.dist, self.val_set)


def _main_metrics(res: dict) -> dict:
    return {k: float(res[k]) for k in ("mIoU", "mAcc", "aAcc")}


def _write_per_class(out: Path, res: dict, dist: DistInfo) -> None:
    if dist.is_main and res:
        text = json.dumps({"IoU": res["IoU"], "Acc": res["Acc"]}, allow_nan=True)
        atomic_write(out / "per_class.json", lambda tmp: Path(tmp).write_text(text))
