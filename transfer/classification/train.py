"""ImageNet protocols on the shared engine: linear probe, partial and full fine-tuning.

One function runs all three; the recipe's `protocol` picks what is trained, the head and
the optimiser (LARS for the linear probe, AdamW with layer-wise lr decay otherwise). Partial
fine-tuning of 0 blocks is the linear probe (paper Figure 9).
"""
import sys
from pathlib import Path

import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from mae_core.cpu_linear import select_cpu_linear
from mae_core.distributed import DistInfo
from mae_core.engine import adamw, amp_context, batch_plan, epoch_cosine_schedule, scaled_lr
from mae_core.hooks import EMA, BestCheckpoint, Counter, PeriodicEval
from mae_core.runner import Training, run
from mae_core.errors import MaeBenchError
from results.evidence import PREDICTIONS_FILE
from transfer.encoder import init_encoder

from .data import (ImageFolderDataset, check_same_classes, check_splits, drop_bad, eval_transform, resolve_root,
                   train_transform)
from .evaluate import evaluate_classifier, write_val_predictions
from .features import extract_features
from .heads import finetune_head, linear_probe_head, set_trainable
from .optim import Lars, param_groups_lrd


class ShardSampler(torch.utils.data.Sampler):
    """Every index exactly once over all ranks (rank r takes r, r + W, ...): exact evaluation."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


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
                                "section (see benchmarks/recipes/in1k_partial/base.py)")
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
    return run(cfg, lambda dist: _training(cfg, protocol, init, arch, data, Path(out), resume, dist), out=out,
               resume=resume)


def build_datasets(cfg: dict, root: Path) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """(train, val) ImageFolders with the recipe's transforms and subsets; an error if their classes differ."""
    data_cfg, size = cfg["data"], cfg["model"]["img_size"]
    common = dict(subset_mode=data_cfg["subset_mode"], strict=data_cfg["strict"], img_size=size)
    train_set = ImageFolderDataset(root, "train", train_transform(data_cfg["augment"], size, data_cfg),
                                   subset=data_cfg["subset"], **common)
    val_set = ImageFolderDataset(root, "val", eval_transform(size, data_cfg["crop_pct"]), subset=data_cfg["val_subset"],
                                 **common)
    check_same_classes(train_set, val_set)
    return train_set, val_set


class Sources:
    """What training and evaluation read: the image sets, or (linear probe with runtime.cache_features) the
    frozen pre-logit features computed once by `prepare`, in which case only the head is trained."""

    def __init__(self, train_set, val_set, cfg: dict, protocol: str, dist: DistInfo):
        data_cfg, runtime = cfg["data"], cfg["runtime"]
        self.cached = protocol == "linear" and runtime["cache_features"]
        if self.cached and data_cfg["augment"] != "none":
            raise MaeBenchError("runtime.cache_features=True needs data.augment='none' (cached features cannot be augmented)")
        self.batch, self.workers, self.dist = cfg["schedule"]["batch_size"], data_cfg["num_workers"], dist
        self.seed, self.pin = runtime["seed"], dist.device.startswith("cuda")
        self.train, self.val_set, self.val = train_set, val_set, None
        self.val_index = None  # the val_set index of each image `val` yields, in order (this process's shard)

    def prepare(self, model: nn.Module) -> int:
        """Build the evaluation loader, and with cached features compute them; returns how many training
        samples were skipped as unreadable while caching."""
        dist = self.dist
        self.val = DataLoader(self.val_set, batch_size=self.batch,
                              sampler=ShardSampler(len(self.val_set), dist.rank, dist.world_size),
                              num_workers=self.workers, pin_memory=self.pin)
        self.val_index = torch.tensor(self.val.sampler.indices, dtype=torch.int64)
        if not self.cached:
            return 0
        *train_feats, dropped = extract_features(
            model, DataLoader(self.train, batch_size=self.batch, num_workers=self.workers), dist.device)
        self.train = TensorDataset(*train_feats)
        read = []
        *val_feats, _ = extract_features(model, self.val, dist.device, read)  # counted by evaluate_classifier's n
        self.val_index = self.val_index[torch.cat(read)] if read else self.val_index
        self.val = [(val_feats[0][i:i + self.batch], val_feats[1][i:i + self.batch])
                    for i in range(0, len(val_feats[1]), self.batch)]
        return dropped

    def train_loader(self, epoch: int) -> DataLoader:
        dist = self.dist
        sampler = DistributedSampler(self.train, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                     seed=self.seed, drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(self.train, batch_size=self.batch, sampler=sampler, drop_last=True,
                          num_workers=0 if self.cached else self.workers, pin_memory=self.pin)

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


class TrainStep:
    """`step(net, batch) -> (loss, n)`: unreadable samples dropped and counted in `skipped`, Mixup/CutMix, the
    criterion."""

    def __init__(self, mixup, criterion, device: str, cached: bool, skipped: Counter):
        self.mixup, self.criterion, self.device, self.cached, self.skipped = mixup, criterion, device, cached, skipped

    def __call__(self, net, batch):
        if self.cached:
            x, y = batch
        else:
            x, y, bad = drop_bad(batch)
            self.skipped.add(bad)
            if self.mixup is not None and len(y) % 2:  # Mixup pairs samples: keep the batch even
                x, y = x[:-1], y[:-1]
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        target = y
        if self.mixup is not None:
            x, target = self.mixup(x, y)
        return self.criterion(net(x), target), len(y)


class TopKEval:
    """`evaluate(epoch, last) -> stats`: top-1/top-5 of the reported model (the EMA one with EMA, then also the
    trained one's, as *_raw); the last evaluation writes the per-image predictions. Run by mae_core.hooks.PeriodicEval
    after every runtime.eval_every-th epoch and the last."""

    def __init__(self, sources: Sources, model: nn.Module, ema, out: Path, autocast, epochs: int):
        self.sources, self.model, self.ema, self.out = sources, model, ema, out
        self.autocast, self.epochs = autocast, epochs

    def __call__(self, epoch: int, last: bool) -> dict:
        src, dist = self.sources, self.sources.dist
        self.model.eval()  # (the EMA model is always in eval mode)
        reported = self.ema.module if self.ema is not None else self.model
        res = evaluate_classifier(src.eval_forward(reported), src.val, dist, self.autocast, keep=last)
        if last and dist.is_main:  # the reported model's per-image predictions, for paired comparisons
            write_val_predictions(self.out / PREDICTIONS_FILE, src.val_set, res["rows"])
        stats = dict(top1=res["top1"], top5=res["top5"], val_loss=res["loss"], val_scored=res["n"])
        if self.ema is not None:
            raw = evaluate_classifier(src.eval_forward(self.model), src.val, dist, self.autocast)
            stats.update(top1_raw=raw["top1"], top5_raw=raw["top5"])
        if dist.is_main:
            print(f"epoch {epoch + 1}/{self.epochs}: top1 {stats['top1']:.2f} top5 {stats['top5']:.2f}"
                  + (f" (EMA; without EMA top1 {stats['top1_raw']:.2f})" if self.ema is not None else ""))
        return stats


def _training(cfg, protocol: str, init, arch, data, out: Path, resume, dist: DistInfo) -> Training:
    """The protocol's training: `epochs` passes over train/, the official warm-up + cosine per update, top-1/top-5
    on val/ (of the EMA model with EMA) every runtime.eval_every-th epoch and after the last, the best checkpoint."""
    data_cfg, schedule, runtime, model_cfg = cfg["data"], cfg["schedule"], cfg["runtime"], cfg["model"]
    root, name = resolve_root(data)
    train_set, val_set = build_datasets(cfg, root)
    split_facts = check_splits(train_set, val_set, out)
    model, info = build_classifier(cfg, init, arch, train_set.num_classes, protocol)
    model.to(dist.device)
    linear = select_cpu_linear(model, runtime, dist.device, out, resume)

    updates, eff_batch = batch_plan(len(train_set), schedule["batch_size"], schedule["accum_iter"], dist)
    lr = scaled_lr(cfg["optim"]["blr"], eff_batch, cfg["optim"]["lr"])
    optimizer = build_optimizer(model, cfg, lr)
    scheduler = epoch_cosine_schedule(optimizer, schedule["epochs"], updates, schedule["warmup_epochs"],
                                      cfg["optim"]["min_lr"])
    mixup, criterion = build_criterion(cfg, train_set.num_classes)
    sources = Sources(train_set, val_set, cfg, protocol, dist)
    skipped = Counter("skipped_samples")  # training samples skipped as unreadable, kept over a resume
    step = TrainStep(mixup, criterion, dist.device, sources.cached, skipped)

    ema = ModelEmaV3(model, decay=runtime["ema_decay"]) if runtime["ema_decay"] else None
    reported = ema.module if ema is not None else model  # what checkpoints hold as "model" (see hooks.EMA)
    topk = TopKEval(sources, model, ema, out, amp_context(dist.device, runtime["amp"])[0], schedule["epochs"])
    hooks = [*([EMA(ema, model)] if ema is not None else []), PeriodicEval(topk, runtime["eval_every"]),
             BestCheckpoint("top1", out / "checkpoint-best.pth", reported), skipped]
    config = {"task": cfg.get("task"), "arch": info["arch"], "num_classes": train_set.num_classes,
              "classes": train_set.classes, "global_pool": model_cfg["global_pool"], "recipe": cfg}

    def start(engine):
        dropped = sources.prepare(model)  # after the resume: the features of the resumed model
        if sources.cached:  # the training images the extraction dropped (counted again when a resume extracts again)
            skipped.value = dropped
        if dist.is_main:
            print(f"{protocol}: {info['kind']} {info['arch']} on {len(train_set)} train / {len(val_set)} val images "
                  f"({train_set.num_classes} classes, {root}); effective batch {eff_batch}, lr {lr:.3g}, "
                  f"{info['trainable_params']:,} trainable parameters")

    def finish(stats: dict) -> dict:
        metrics = {k: stats[k] for k in ("top1", "top5", "top1_best", "top1_raw", "top5_raw") if k in stats}
        scored = stats.get("val_scored", len(val_set))
        if scored < len(val_set) and dist.is_main:
            print(f"warning: {len(val_set) - scored} validation images are unreadable; top-1 is over the {scored} "
                  "that were read (--strict makes that an error)", file=sys.stderr)
        return {"metrics": metrics, "init": info, "arch": info["arch"], "device": dist.device,
                "dataset": {"name": name, "root": str(root), "split": "val",
                            "subset": data_cfg["subset"], "num_classes": train_set.num_classes,
                            "train_images": len(train_set), "val_images": scored, "val_skipped": len(val_set) - scored,
                            "skipped_samples": skipped.value, **split_facts}}

    # with cached features the optimiser step differentiates through the head alone
    return Training(reported, optimizer, scheduler, schedule["epochs"] * updates, updates, sources.train_loader, step,
                    finish, hooks=hooks, config=config, desc=protocol,
                    trained=model.head if sources.cached else model, notes=[linear], start=start)
