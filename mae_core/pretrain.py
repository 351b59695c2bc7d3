"""MAE pretraining on the shared engine (paper recipe: AdamW (0.9, 0.95), wd 0.05,
lr = blr * batch / 256, warm-up + cosine per iteration, random-size crops)."""
import json
import time
from pathlib import Path

import torch
from timm.optim import param_groups_weight_decay

from .atomic import atomic_write
from .data import PretrainImages, epoch_loader, pretrain_transform
from .distributed import DistInfo
from .engine import adamw, batch_plan, epoch_cosine_schedule, scaled_lr
from .images import center_tensor
from .masking import NoiseSampler
from .models_mae import create_mae
from .cpu_linear import select_cpu_linear
from .runner import Training, run
from .visualize import save_reconstructions


def enable_fast_paths(dist: DistInfo) -> None:
    """TF32 matmuls and flash / memory-efficient SDPA on GPU (timm's blocks call SDPA)."""
    if dist.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.enable_flash_sdp(True)
        torch.backends.cuda.enable_mem_efficient_sdp(True)


def build_mae(m: dict):
    return create_mae(m["arch"], img_size=m["img_size"], norm_pix_loss=m["norm_pix_loss"],
                      decoder_depth=m["decoder_depth"], decoder_embed_dim=m["decoder_embed_dim"],
                      decoder_num_heads=m["decoder_num_heads"], mask_strategy=m["mask_strategy"],
                      mask_tokens_in_encoder=m["mask_tokens_in_encoder"])


def build_optimizer(model: torch.nn.Module, o: dict, lr: float) -> torch.optim.AdamW:
    """AdamW as official main_pretrain.py builds it: timm's add_weight_decay without a skip list, i.e. no
    decay only on 1-D parameters and biases (cls_token and mask_token are decayed; pos embeddings are frozen)."""
    return adamw(param_groups_weight_decay(model, o["weight_decay"]), lr=lr, betas=o["betas"])


def pretrain(cfg: dict, data: str, out: str, resume: str | None = None, device: str = "auto") -> dict:
    """Pretrain an MAE as the resolved recipe `cfg` says; returns the last epoch's stats."""
    return run(cfg, lambda dist: _training(cfg, Path(data), Path(out), resume, dist), out=out, resume=resume,
               device=device)


def _training(cfg, data: Path, out: Path, resume, dist: DistInfo) -> Training:
    """`epochs` passes over the images, the official warm-up + cosine per update; at the end (rank 0) the
    reconstructions of the first images and RUN/summary.json."""
    m, d, o, s, r = cfg["model"], cfg["data"], cfg["optim"], cfg["schedule"], cfg["runtime"]
    enable_fast_paths(dist)
    model = build_mae(m).to(dist.device)
    linear = select_cpu_linear(model, r, dist.device, out, resume)  # before the checkpoint config copies the recipe
    grid = model.grid
    dataset = PretrainImages(data, pretrain_transform(d["augment"], m["img_size"], d["crop_scale"]),
                             NoiseSampler(m["mask_strategy"], grid, m["mask_ratio"]), subset=d["subset"],
                             seed=r["seed"], strict=d["strict"])
    per_rank_batch = s["batch_size"]
    updates, eff_batch = batch_plan(len(dataset), per_rank_batch, s["accum_iter"], dist)
    lr = scaled_lr(o["blr"], eff_batch, o["lr"])
    optimizer = build_optimizer(model, o, lr)
    scheduler = epoch_cosine_schedule(optimizer, s["epochs"], updates, s["warmup_epochs"], o["min_lr"])
    config = {**model.config, "arch": m["arch"], "recipe": cfg}
    mask_ratio = m["mask_ratio"]
    pin = dist.device.startswith("cuda")

    def step(net, batch):
        imgs, noise = (t.to(dist.device, non_blocking=True) for t in batch)
        loss, _, _ = net(imgs, mask_ratio=mask_ratio, noise=noise)
        return loss, imgs.shape[0]

    def loader(epoch):
        return epoch_loader(dataset, epoch, per_rank_batch, dist.rank, dist.world_size, r["seed"],
                            d["num_workers"], pin)

    t0 = None

    def start(engine):
        nonlocal t0
        if dist.is_main:
            print(f"pretraining {m['arch']} on {len(dataset)} images ({dataset.root}); effective batch {eff_batch}, "
                  f"lr {lr:.3g}, epochs {engine.start_epoch}->{s['epochs']}, device {dist.device}")
        t0 = time.time()

    def finish(stats: dict) -> dict:
        if dist.is_main:
            pictures = torch.stack([center_tensor(dataset.open_image(i), m["img_size"])
                                    for i in range(min(6, len(dataset)))])  # skips unreadable files as training did
            save_reconstructions(model, pictures, out / "reconstructions.png", mask_ratio=mask_ratio, seed=r["seed"])
            summary = {"arch": m["arch"], "images": len(dataset), "epochs": s["epochs"], "effective_batch": eff_batch,
                       "lr": lr, "final": stats, "wall_s": time.time() - t0, "recipe": cfg}
            text = json.dumps(summary, indent=2, allow_nan=True)
            atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
        return stats

    return Training(model, optimizer, scheduler, s["epochs"] * updates, updates, loader, step, finish, config=config,
                    desc="pretrain", compile=r.get("compile", False), notes=[linear], start=start)
