"""ImageNet protocols on the shared engine: linear probe, partial and full fine-tuning.

One trainer runs all three; the recipe's `protocol` picks what is trained, the head and
the optimiser (LARS for the linear probe, AdamW with layer-wise lr decay otherwise). Partial
fine-tuning of 0 blocks is the linear probe (paper Figure 9).
"""
import sys

import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from mae_core.distributed import DistInfo
from mae_core.engine import adamw, amp_context
from mae_core.hooks import EMA, BestCheckpoint, Counter, PeriodicEval
from mae_core.runner import run
from mae_core.trainer import Trainer
from mae_core.errors import MaeBenchError
from results.evidence import PREDICTIONS_FILE
from transfer.encoder import init_encoder

from .data import (ImageFolderDataset, check_same_classes, check_splits, drop_bad, eval_transform, resolve_root,
                   train_transform)
from .evaluate import evaluate_classifier, write_val_predictions
from .features import extract_features
from .heads import finetune_head, linear_probe_head, set_trainable
from .optim import Lars, param_groups_lrd


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def resolve_protocol(cfg: dict) -> str:
    """The protocol a recipe trains. Partial fine-tuning of K = 0 blocks is the linear probe (paper Fig. 9:
    "tuning 0 blocks is linear probing"): the recipe's `linear_probe` sections replace the fine-tuning ones.
    `schedule.epochs_per_blocks` ((K, epochs) pairs) sets the epochs of the K it lists. Updates `cfg` in
    place, so the result record holds the settings that ran."""
    protocol, blocks = cfg["protocol"], cfg.get("blocks")
    if protocol != "partial":
        return protocol
    if not _is_int(blocks) or blocks < 0:
        raise MaeBenchError(f"blocks must be a number of blocks >= 0 for in1k_partial, got {blocks!r}")
    pairs = cfg["schedule"].get("epochs_per_blocks") or ()
    if not all(isinstance(x, (list, tuple)) and len(x) == 2 and all(_is_int(v) and v >= 0 for v in x) for x in pairs):
        raise MaeBenchError(f"schedule.epochs_per_blocks must be (K, epochs) pairs of integers, got {pairs!r}")
    per_k = dict(pairs)
    if blocks == 0:
        if not cfg.get("linear_probe"):
            raise MaeBenchError("blocks=0 is the linear probe (paper Fig. 9); the recipe needs a `linear_probe` "
                                "section (see benchmarks/recipes/in1k_partial/schema.py)")
        for section, values in cfg["linear_probe"].items():
            unknown = sorted(set(values) - set(cfg.get(section) or {}))
            if unknown:
                raise MaeBenchError(f"linear_probe.{section} has keys the recipe lacks: {', '.join(unknown)}")
            cfg[section].update(values)
    if blocks in per_k:
        epochs = per_k[blocks]
        if epochs < 1:
            raise MaeBenchError(f"schedule.epochs_per_blocks gives K={blocks} {epochs} epochs; it must be at least 1")
        cfg["schedule"]["epochs"] = epochs
    return "linear" if blocks == 0 else "partial"


def build_classifier(cfg: dict, init: str, arch: str | None, num_classes: int, protocol: str):
    model_cfg = cfg["model"]
    model, info = init_encoder(init, arch=arch, img_size=model_cfg["img_size"], num_classes=num_classes,
                               global_pool=model_cfg["global_pool"], drop_path_rate=model_cfg["drop_path"],
                               features=model_cfg.get("features", "paper"), probe=protocol,
                               num_heads=model_cfg.get("num_heads"))
    (linear_probe_head if protocol == "linear" else finetune_head)(model)
    trainable = set_trainable(model, protocol, cfg.get("blocks") or 0, cfg.get("blocks_part") or "all")
    info["trainable_params"] = sum(p.numel() for n, p in model.named_parameters() if n in set(trainable))
    return model, info


def build_optimizer(model: nn.Module, cfg: dict, lr: float):
    optim = cfg["optim"]
    if optim["name"] == "lars":
        return Lars([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=optim["weight_decay"])
    if optim["name"] != "adamw":
        raise MaeBenchError(f"optim.name must be adamw or lars, got {optim['name']!r}")
    groups = param_groups_lrd(model, optim["weight_decay"], no_weight_decay_list=model.no_weight_decay(),
                              layer_decay=optim["layer_decay"])
    return adamw(groups, lr=lr, betas=optim["betas"])


def build_criterion(cfg: dict, num_classes: int):
    """(mixup or None, loss): soft-target CE under Mixup/CutMix, label smoothing or plain CE otherwise."""
    mix = cfg["mixup"]
    mixup = None
    if mix["mixup"] > 0 or mix["cutmix"] > 0:
        mixup = Mixup(mixup_alpha=mix["mixup"], cutmix_alpha=mix["cutmix"], prob=mix["prob"],
                      switch_prob=mix["switch_prob"], mode=mix["mode"], label_smoothing=mix["smoothing"],
                      num_classes=num_classes)
        return mixup, SoftTargetCrossEntropy()
    if mix["smoothing"] > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=mix["smoothing"])
    return None, nn.CrossEntropyLoss()


def run_classification(cfg: dict, *, init: str, arch: str | None, data: str, out: str,
                       resume: str | None = None) -> dict:
    """Train and evaluate one protocol; returns {"metrics", "init", "dataset", "arch"} (rank 0's view)."""
    protocol = resolve_protocol(cfg)
    return run(cfg, lambda dist: ClassificationTrainer(cfg, dist, protocol, init, arch, data, out, resume).build())


class ClassificationTrainer(Trainer):
    """The protocol's training: `epochs` passes over train/, the official warm-up + cosine per update, top-1/top-5 on
    val/ (of the EMA model with EMA) every runtime.eval_every-th epoch and after the last, the best checkpoint. With
    runtime.cache_features (linear probe) it trains the head alone on frozen features computed once at the start."""

    def __init__(self, cfg: dict, dist: DistInfo, protocol: str, init: str, arch: str | None, data, out,
                 resume: str | None = None):
        super().__init__(cfg, dist, out, resume)
        self.protocol, self.init, self.arch, self.desc, self.ema = protocol, init, arch, protocol, None
        self.cached = protocol == "linear" and cfg["runtime"]["cache_features"]
        if self.cached and cfg["data"]["augment"] != "none":
            raise MaeBenchError("runtime.cache_features=True needs data.augment='none' (cached features cannot be augmented)")
        self.root, self.name = resolve_root(data)
        data_cfg, size = cfg["data"], cfg["model"]["img_size"]
        common = dict(subset_mode=data_cfg["subset_mode"], strict=data_cfg["strict"], img_size=size)
        self.train_set = ImageFolderDataset(self.root, "train", train_transform(data_cfg["augment"], size, data_cfg),
                                            subset=data_cfg["subset"], **common)
        self.val_set = ImageFolderDataset(self.root, "val", eval_transform(size, data_cfg["crop_pct"]),
                                          subset=data_cfg["val_subset"], **common)
        check_same_classes(self.train_set, self.val_set)
        self.split_facts = check_splits(self.train_set, self.val_set, self.out)
        self.mixup, self.criterion = build_criterion(cfg, self.train_set.num_classes)
        self.skipped = Counter("skipped_samples")  # training samples skipped as unreadable, kept over a resume
        self.autocast = amp_context(dist.device, cfg["runtime"]["amp"])[0]
        self.train_data = self.train_set  # what the epochs read: the images, or their cached features

    def build_model(self):
        model, self.info = build_classifier(self.cfg, self.init, self.arch, self.train_set.num_classes, self.protocol)
        return model.to(self.dist.device)

    def build_optimizer(self):
        return build_optimizer(self.model, self.cfg, self.lr)

    def build_hooks(self):
        runtime, model = self.cfg["runtime"], self.model
        self.ema = ModelEmaV3(model, decay=runtime["ema_decay"]) if runtime["ema_decay"] else None
        return [*([EMA(self.ema, model)] if self.ema is not None else []), PeriodicEval(self.test, runtime["eval_every"]),
                BestCheckpoint("top1", self.out / "checkpoint-best.pth", self.saved), self.skipped]

    def build_config(self):
        return {"task": self.cfg.get("task"), "arch": self.info["arch"], "num_classes": self.train_set.num_classes,
                "classes": self.train_set.classes, "global_pool": self.cfg["model"]["global_pool"], "recipe": self.cfg}

    @property
    def saved(self):
        return self.ema.module if self.ema is not None else self.model  # see hooks.EMA

    @property
    def trained(self):
        return self.model.head if self.cached else self.model  # cached features: the head alone

    def build_train_loader(self, epoch: int) -> DataLoader:
        dist, data, batch = self.dist, self.train_data, self.cfg["schedule"]["batch_size"]
        sampler = DistributedSampler(data, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                     seed=self.cfg["runtime"]["seed"], drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(data, batch_size=batch, sampler=sampler, drop_last=True, pin_memory=dist.device.startswith("cuda"),
                          num_workers=0 if self.cached else self.cfg["data"]["num_workers"])

    def run_step(self, net, batch):
        """Unreadable samples dropped and counted, Mixup/CutMix, the criterion."""
        if self.cached:
            x, y = batch
        else:
            x, y, bad = drop_bad(batch)
            self.skipped.add(bad)
            if self.mixup is not None and len(y) % 2:  # Mixup pairs samples: keep the batch even
                x, y = x[:-1], y[:-1]
        x, y = x.to(self.dist.device, non_blocking=True), y.to(self.dist.device, non_blocking=True)
        x, target = self.mixup(x, y) if self.mixup is not None else (x, y)
        return self.criterion(net(x), target), len(y)

    def on_start(self, engine):
        """The evaluation loader, and with cached features the features (of the resumed model, after a resume)."""
        dist, batch, workers = self.dist, self.cfg["schedule"]["batch_size"], self.cfg["data"]["num_workers"]
        self.val_index = torch.arange(dist.rank, len(self.val_set), dist.world_size)  # each process its share, exactly
        self.val = DataLoader(Subset(self.val_set, self.val_index.tolist()), batch_size=batch, num_workers=workers,
                              pin_memory=dist.device.startswith("cuda"))
        if self.cached:
            *train_feats, dropped = extract_features(
                self.model, DataLoader(self.train_set, batch_size=batch, num_workers=workers), dist.device)
            self.train_data = TensorDataset(*train_feats)
            self.skipped.value = dropped  # the images the extraction dropped (counted again when a resume extracts)
            read = []
            *val_feats, _ = extract_features(self.model, self.val, dist.device, read)  # counted by evaluate_classifier
            self.val_index = self.val_index[torch.cat(read)] if read else self.val_index
            self.val = [(val_feats[0][i:i + batch], val_feats[1][i:i + batch]) for i in range(0, len(val_feats[1]), batch)]
        super().on_start(engine)

    def eval_forward(self, net: nn.Module):
        """`forward(batch) -> (logits, labels, val_set indices)` of `net` over `val`, one pass from its start."""
        device, seen = self.dist.device, [0]

        def forward(batch):
            n = len(batch[1])
            index = self.val_index[seen[0]:seen[0] + n]
            seen[0] += n
            if self.cached:
                x, y = batch
                return net.head(x.to(device)), y.to(device), index
            x, y, _ = drop_bad(batch)
            return net(x.to(device)), y.to(device), index[torch.as_tensor(batch[2], dtype=torch.bool)]
        return forward

    def test(self, epoch: int, last: bool) -> dict:
        """top-1/top-5 of the reported model (the EMA one with EMA, then also the trained one's, as *_raw); the last
        evaluation writes the per-image predictions."""
        self.model.eval()  # (the EMA model is always in eval mode)
        res = evaluate_classifier(self.eval_forward(self.saved), self.val, self.dist, self.autocast, keep=last)
        if last and self.dist.is_main:  # the reported model's per-image predictions, for paired comparisons
            write_val_predictions(self.out / PREDICTIONS_FILE, self.val_set, res["rows"])
        stats = dict(top1=res["top1"], top5=res["top5"], val_loss=res["loss"], val_scored=res["n"])
        if self.ema is not None:
            raw = evaluate_classifier(self.eval_forward(self.model), self.val, self.dist, self.autocast)
            stats.update(top1_raw=raw["top1"], top5_raw=raw["top5"])
        if self.dist.is_main:
            ema = f" (EMA; without EMA top1 {stats['top1_raw']:.2f})" if self.ema is not None else ""
            print(f"epoch {epoch + 1}/{self.cfg['schedule']['epochs']}: top1 {stats['top1']:.2f} "
                  f"top5 {stats['top5']:.2f}{ema}")
        return stats

    def describe(self, engine):
        info, train_set = self.info, self.train_set
        return (f"{self.protocol}: {info['kind']} {info['arch']} on {len(train_set)} train / {len(self.val_set)} val "
                f"images ({train_set.num_classes} classes, {self.root}); effective batch {self.batch}, lr {self.lr:.3g}, "
                f"{info['trainable_params']:,} trainable parameters")

    def finish(self, stats: dict) -> dict:
        metrics = {k: stats[k] for k in ("top1", "top5", "top1_best", "top1_raw", "top5_raw") if k in stats}
        n_val = len(self.val_set)
        scored = stats.get("val_scored", n_val)
        if scored < n_val and self.dist.is_main:
            print(f"warning: {n_val - scored} validation images are unreadable; top-1 is over the {scored} "
                  "that were read (--strict makes that an error)", file=sys.stderr)
        return {"metrics": metrics, "init": self.info, "arch": self.info["arch"], "device": self.dist.device,
                "dataset": {"name": self.name, "root": str(self.root), "split": "val",
                            "subset": self.cfg["data"]["subset"], "num_classes": self.train_set.num_classes,
                            "train_images": len(self.train_set), "val_images": scored, "val_skipped": n_val - scored,
                            "skipped_samples": self.skipped.value, **self.split_facts}}
