"""MAE pretraining on the shared engine (paper recipe: AdamW (0.9, 0.95), wd 0.05,
lr = blr * batch / 256, warm-up + cosine per iteration, random-size crops)."""
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from timm.optim import param_groups_weight_decay

from .data import PretrainImages, epoch_loader, pretrain_transform
from .distributed import DistInfo
from .errors import MaeBenchError
from .engine import Hook, adamw, batch_plan, epoch_cosine_schedule, scaled_lr
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


def build_mae(model_cfg: dict):
    return create_mae(model_cfg["arch"], img_size=model_cfg["img_size"], norm_pix_loss=model_cfg["norm_pix_loss"],
                      decoder_depth=model_cfg["decoder_depth"], decoder_embed_dim=model_cfg["decoder_embed_dim"],
                      decoder_num_heads=model_cfg["decoder_num_heads"], mask_strategy=model_cfg["mask_strategy"],
                      mask_tokens_in_encoder=model_cfg["mask_tokens_in_encoder"])


def build_optimizer(model: torch.nn.Module, optim: dict, lr: float) -> torch.optim.AdamW:
    """AdamW as official main_pretrain.py builds it: timm's add_weight_decay without a skip list, i.e. no
    decay only on 1-D parameters and biases (cls_token and mask_token are decayed; pos embeddings are frozen)."""
    return adamw(param_groups_weight_decay(model, optim["weight_decay"]), lr=lr, betas=optim["betas"])


def check_start(cfg: dict, init: str, arch: str | None) -> None:
    """Pretraining starts from scratch, and --arch (when given) is the recipe's model.arch."""
    if init != "scratch":
        raise MaeBenchError(f"MAE pretraining starts from scratch, not from {init!r}")
    if arch is not None and arch != cfg["model"]["arch"]:
        raise MaeBenchError(f"the encoder is model.arch ({cfg['model']['arch']}), not {arch}")


def run_pretrain(cfg: dict, *, init: str, arch: str | None, data: str, out: str, resume: str | None = None,
                 hooks: Sequence[Hook] = ()) -> dict:
    """MAE pretraining from scratch as the resolved recipe `cfg` says, with `hooks` (engine hooks) added to the
    run: the `pretrain` task's runner, `transfer.classification.knn_monitor.run_pretrain_monitored`, passes its
    k-NN monitor here. Returns the result record's parts; its metric is the last epoch's mean loss."""
    check_start(cfg, init, arch)
    return run(cfg, lambda dist: _training(cfg, Path(data), Path(out), resume, dist, list(hooks)), out=out,
               resume=resume, device=cfg["runtime"]["device"])


def _training(cfg, data: Path, out: Path, resume, dist: DistInfo, hooks: list[Hook]) -> Training:
    """`epochs` passes over the images, the official warm-up + cosine per update; at the end (rank 0) the
    reconstructions of the first images and the result record's parts."""
    model_cfg, data_cfg, optim = cfg["model"], cfg["data"], cfg["optim"]
    schedule, runtime = cfg["schedule"], cfg["runtime"]
    enable_fast_paths(dist)
    model = build_mae(model_cfg).to(dist.device)
    # before the checkpoint config copies the recipe
    linear = select_cpu_linear(model, runtime, dist.device, out, resume)
    grid = model.grid
    transform = pretrain_transform(data_cfg["augment"], model_cfg["img_size"], data_cfg["crop_scale"])
    dataset = PretrainImages(data, transform, NoiseSampler(model_cfg["mask_strategy"], grid, model_cfg["mask_ratio"]),
                             subset=data_cfg["subset"], seed=runtime["seed"], strict=data_cfg["strict"])
    per_rank_batch = schedule["batch_size"]
    updates, eff_batch = batch_plan(len(dataset), per_rank_batch, schedule["accum_iter"], dist)
    lr = scaled_lr(optim["blr"], eff_batch, optim["lr"])
    optimizer = build_optimizer(model, optim, lr)
    scheduler = epoch_cosine_schedule(optimizer, schedule["epochs"], updates, schedule["warmup_epochs"],
                                      optim["min_lr"])
    config = {**model.config, "arch": model_cfg["arch"], "recipe": cfg}
    mask_ratio = model_cfg["mask_ratio"]
    pin = dist.device.startswith("cuda")

    def step(net, batch):
        imgs, noise = (t.to(dist.device, non_blocking=True) for t in batch)
        loss, _, _ = net(imgs, mask_ratio=mask_ratio, noise=noise)
        return loss, imgs.shape[0]

    def loader(epoch):
        return epoch_loader(dataset, epoch, per_rank_batch, dist.rank, dist.world_size, runtime["seed"],
                            data_cfg["num_workers"], pin)

    def start(engine):
        if dist.is_main:
            print(f"pretraining {model_cfg['arch']} on {len(dataset)} images ({dataset.root}); effective batch "
                  f"{eff_batch}, lr {lr:.3g}, epochs {engine.start_epoch}->{schedule['epochs']}, device {dist.device}")

    def finish(stats: dict) -> dict:
        if not dist.is_main:
            return stats
        pictures = torch.stack([center_tensor(dataset.open_image(i), model_cfg["img_size"])
                                for i in range(min(6, len(dataset)))])  # skips unreadable files as training did
        save_reconstructions(model, pictures, out / "reconstructions.png", mask_ratio=mask_ratio, seed=runtime["seed"])
        root = dataset.root.parent if dataset.root.name == "train" else dataset.root
        return {"metrics": {"loss": stats["loss"] if "loss" in stats else _logged_loss(out)},
                "init": {"kind": "scratch"}, "arch": model_cfg["arch"], "device": dist.device,
                "dataset": {"name": root.name, "root": str(dataset.root), "split": "train",
                            "subset": data_cfg["subset"], "images": len(dataset)}}

    return Training(model, optimizer, scheduler, schedule["epochs"] * updates, updates, loader, step, finish,
                    hooks=hooks, config=config, desc="pretrain", compile=runtime.get("compile", False), notes=[linear],
                    start=start)


def _logged_loss(out: Path) -> float:
    """The last epoch's loss in RUN/log.jsonl: a resumed finished run trains nothing, so it reports this again."""
    epochs = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("type") == "epoch"]
    return epochs[-1]["loss"]
