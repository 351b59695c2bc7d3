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

from mae_core.checkpoint import save_checkpoint
from mae_core.cpu_linear import select_cpu_linear
from mae_core.distributed import DistInfo, init_distributed, shutdown
from mae_core.engine import Engine, adamw, batch_plan, scaled_lr, seed_all
from mae_core.errors import MaeBenchError
from transfer.encoder import init_encoder

from .data import ImageFolderDataset, check_same_classes, drop_bad, eval_transform, train_transform
from .evaluate import evaluate
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


def resolve_root(data: str | Path) -> tuple[Path, str]:
    """The ImageFolder root (with train/ and val/) and a dataset name; the synthetic set's root works too."""
    data = Path(data)
    if (data / "imagenet" / "train").is_dir():
        data = data / "imagenet"
    synthetic = (data / "synth.json").exists() or (data.parent / "synth.json").exists()
    return data, "synthetic-imagenet" if synthetic else "imagenet"


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


def build_model(cfg: dict, init: str, arch: str | None, num_classes: int, protocol: str):
    m = cfg["model"]
    model, info = init_encoder(init, arch=arch, img_size=m["img_size"], num_classes=num_classes,
                               global_pool=m["global_pool"], drop_path_rate=m["drop_path"])
    (linear_probe_head if protocol == "linear" else finetune_head)(model)
    trainable = set_trainable(model, protocol, cfg.get("blocks") or 0, cfg.get("blocks_part") or "all")
    info["trainable_params"] = sum(p.numel() for n, p in model.named_parameters() if n in set(trainable))
    return model, info


def build_optimizer(model: nn.Module, cfg: dict, lr: float):
    o = cfg["optim"]
    if o["name"] == "lars":
        return Lars([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=o["weight_decay"])
    if o["name"] != "adamw":
        raise MaeBenchError(f"optim.name must be adamw or lars, got {o['name']!r}")
    groups = param_groups_lrd(model, o["weight_decay"], no_weight_decay_list=model.no_weight_decay(),
                              layer_decay=o["layer_decay"])
    return adamw(groups, lr=lr, betas=o["betas"])


def build_criterion(cfg: dict, num_classes: int):
    """(mixup or None, loss): soft-target CE under Mixup/CutMix, label smoothing or plain CE otherwise."""
    x = cfg["mixup"]
    mixup = None
    if x["mixup"] > 0 or x["cutmix"] > 0:
        mixup = Mixup(mixup_alpha=x["mixup"], cutmix_alpha=x["cutmix"], prob=x["prob"], switch_prob=x["switch_prob"],
                      mode=x["mode"], label_smoothing=x["smoothing"], num_classes=num_classes)
        return mixup, SoftTargetCrossEntropy()
    if x["smoothing"] > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=x["smoothing"])
    return None, nn.CrossEntropyLoss()


@torch.no_grad()
def extract_features(model: nn.Module, loader, device: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pre-logit features (what the linear head sees) and labels for a whole loader, and how many
    unreadable samples were dropped."""
    model.eval()
    feats, labels, dropped = [], [], 0
    for batch in loader:
        x, y, bad = drop_bad(batch)
        feats.append(model.forward_head(model.forward_features(x.to(device)), pre_logits=True).cpu())
        labels.append(y)
        dropped += bad
    return torch.cat(feats), torch.cat(labels), dropped


def run_classification(cfg: dict, *, init: str, arch: str | None, data: str, out: str,
                       resume: str | None = None) -> dict:
    """Train and evaluate one protocol; returns {"metrics", "init", "dataset", "arch"} (rank 0's view)."""
    dist = init_distributed(cfg["runtime"]["device"])
    try:
        return _run(cfg, init, arch, data, Path(out), resume, dist)
    finally:
        shutdown(dist)


def _run(cfg, init, arch, data, out: Path, resume, dist: DistInfo) -> dict:
    protocol = resolve_protocol(cfg)
    d, s, r, m = cfg["data"], cfg["schedule"], cfg["runtime"], cfg["model"]
    seed_all(r["seed"])
    root, name = resolve_root(data)
    size = m["img_size"]
    train_set = ImageFolderDataset(root, "train", train_transform(d["augment"], size, d), subset=d["subset"],
                                   subset_mode=d["subset_mode"], strict=d["strict"], img_size=size)
    val_set = ImageFolderDataset(root, "val", eval_transform(size, d["crop_pct"]), subset=d["val_subset"],
                                 subset_mode=d["subset_mode"], strict=d["strict"], img_size=size)
    check_same_classes(train_set, val_set)
    model, info = build_model(cfg, init, arch, train_set.num_classes, protocol)
    model.to(dist.device)
    linear = select_cpu_linear(model, r, dist.device, out, resume)

    per_rank, accum = s["batch_size"], s["accum_iter"]
    updates, eff_batch = batch_plan(len(train_set), per_rank, accum, dist)
    lr = scaled_lr(cfg["optim"]["blr"], eff_batch, cfg["optim"]["lr"])
    optimizer = build_optimizer(model, cfg, lr)
    mixup, criterion = build_criterion(cfg, train_set.num_classes)
    cached = protocol == "linear" and r["cache_features"]
    if cached and d["augment"] != "none":
        raise MaeBenchError("runtime.cache_features=True needs data.augment='none' (cached features cannot be augmented)")

    trained = model.head if cached else model  # what the optimiser step differentiates through
    ddp = trained
    if dist.enabled:
        ddp = nn.parallel.DistributedDataParallel(trained, device_ids=[dist.local_rank] if dist.device.startswith("cuda") else None)
    ema = ModelEmaV3(model, decay=r["ema_decay"]) if r["ema_decay"] else None
    # With EMA the EMA model is the result (paper A.2): checkpoints hold it as "model" (what --ckpt
    # supervised:PATH loads) and the trained weights as "extra_state"["model_raw"] (for resuming).
    reported = ema.module if ema is not None else model
    engine = Engine(ddp, optimizer, run_dir=out, dist=dist, epochs=s["epochs"], updates_per_epoch=updates,
                    warmup_epochs=s["warmup_epochs"], min_lr=cfg["optim"]["min_lr"], accum_iter=accum, amp=r["amp"],
                    clip_grad=cfg["optim"]["clip_grad"], seed=r["seed"], save_every=r["save_every"],
                    keep_last=r["keep_last"], log_every=r["log_every"], desc=protocol, module=reported,
                    config={"task": cfg.get("task"), "arch": info["arch"], "num_classes": train_set.num_classes,
                            "classes": train_set.classes, "global_pool": m["global_pool"], "recipe": cfg},
                    on_update=(lambda: ema.update(model)) if ema else None)
    engine.resume(resume)
    engine.log.write(**linear)
    if ema is not None and "model_raw" in engine.extra_state:
        model.load_state_dict(engine.extra_state["model_raw"])

    workers, pin = d["num_workers"], dist.device.startswith("cuda")
    val_loader = DataLoader(val_set, batch_size=per_rank, sampler=ShardSampler(len(val_set), dist.rank, dist.world_size),
                            num_workers=workers, pin_memory=pin)
    skipped = {"train": 0}
    if cached:
        *train_feats, dropped = extract_features(model, DataLoader(train_set, batch_size=per_rank, num_workers=workers),
                                                 dist.device)
        train_src = TensorDataset(*train_feats)
        skipped["train"] += dropped
        *val_feats, _ = extract_features(model, val_loader, dist.device)  # counted by evaluate's n
        val_source = [(val_feats[0][i:i + per_rank], val_feats[1][i:i + per_rank])
                      for i in range(0, len(val_feats[1]), per_rank)]
    else:
        train_src, val_source = train_set, val_loader

    def loader(epoch):
        sampler = DistributedSampler(train_src, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                     seed=r["seed"], drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(train_src, batch_size=per_rank, sampler=sampler, drop_last=True,
                          num_workers=0 if cached else workers, pin_memory=pin)

    def step(net, batch):
        if cached:
            x, y = batch
        else:
            x, y, bad = drop_bad(batch)
            skipped["train"] += bad
            if mixup is not None and len(y) % 2:  # Mixup pairs samples: keep the batch even
                x, y = x[:-1], y[:-1]
        x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
        target = y
        if mixup is not None:
            x, target = mixup(x, y)
        return criterion(net(x), target), len(y)

    def eval_forward(net):
        def forward(batch):
            if cached:
                x, y = batch
                return net.head(x.to(dist.device)), y.to(dist.device)
            x, y, _ = drop_bad(batch)
            return net(x.to(dist.device)), y.to(dist.device)
        return forward

    def on_epoch_end(epoch):
        if ema is not None:  # saved beside the EMA weights so a resumed run continues both
            engine.extra_state["model_raw"] = dict(model.state_dict())
        last = epoch + 1 == s["epochs"]
        if not last and (epoch + 1) % r["eval_every"]:
            return {}
        model.eval()
        stats = evaluate(eval_forward(reported), val_source, dist, engine.autocast)
        result = {"top1": stats["top1"], "top5": stats["top5"], "val_loss": stats["loss"], "val_scored": stats["n"]}
        if ema is not None:
            raw = evaluate(eval_forward(model), val_source, dist, engine.autocast)
            result.update(top1_raw=raw["top1"], top5_raw=raw["top5"])
        best = engine.extra_state.get("best_top1", -1.0)
        if result["top1"] > best:
            engine.extra_state["best_top1"] = result["top1"]
            engine.extra_state["best_epoch"] = epoch
            if dist.is_main:
                save_checkpoint(out / "checkpoint-best.pth", reported.state_dict(), epoch=epoch, config=engine.config)
        result["top1_best"] = engine.extra_state["best_top1"]
        if skipped["train"]:
            result["skipped_samples"] = skipped["train"]
        if dist.is_main:
            print(f"epoch {epoch + 1}/{s['epochs']}: top1 {result['top1']:.2f} top5 {result['top5']:.2f}"
                  + (f" (EMA; without EMA top1 {result['top1_raw']:.2f})" if ema is not None else ""))
        return result

    if dist.is_main:
        print(f"{protocol}: {info['kind']} {info['arch']} on {len(train_set)} train / {len(val_set)} val images "
              f"({train_set.num_classes} classes, {root}); effective batch {eff_batch}, lr {lr:.3g}, "
              f"{info['trainable_params']:,} trainable parameters")
    stats = engine.fit(loader, step, on_epoch_end)
    if engine.start_epoch >= s["epochs"] and "top1" not in stats:  # resumed a finished run: evaluate once more
        stats = on_epoch_end(s["epochs"] - 1)
    metrics = {k: stats[k] for k in ("top1", "top5", "top1_best", "top1_raw", "top5_raw") if k in stats}
    scored = stats.get("val_scored", len(val_set))
    if scored < len(val_set) and dist.is_main:
        print(f"warning: {len(val_set) - scored} validation images are unreadable; top-1 is over the {scored} "
              "that were read (--strict makes that an error)", file=sys.stderr)
    return {"metrics": metrics, "init": info, "arch": info["arch"], "device": dist.device,
            "dataset": {"name": name, "root": str(root), "split": "val",
                        "subset": d["subset"], "num_classes": train_set.num_classes, "train_images": len(train_set),
                        "val_images": scored, "val_skipped": len(val_set) - scored,
                        "skipped_samples": skipped["train"]}}
