"""MAE pretraining on the shared engine (paper recipe: AdamW (0.9, 0.95), wd 0.05,
lr = blr * batch / 256, warm-up + cosine per iteration, random-size crops)."""
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from .data import PretrainImages, epoch_loader, pretrain_transform
from .distributed import DistInfo
from .errors import MaeBenchError
from .engine import Hook
from .images import center_tensor
from .masking import NoiseSampler
from .models_mae import create_mae
from .runner import run
from .trainer import Trainer
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
    return run(cfg, lambda dist: PretrainTrainer(cfg, dist, data, out, resume, hooks).build())


class PretrainTrainer(Trainer):
    """`epochs` passes over the images, the official warm-up + cosine per update; at the end (rank 0) the
    reconstructions of the first images and the result record's parts."""

    desc = "pretrain"

    def __init__(self, cfg: dict, dist: DistInfo, data, out, resume: str | None = None, hooks: Sequence[Hook] = ()):
        super().__init__(cfg, dist, out, resume)
        self.data, self.extra_hooks = Path(data), list(hooks)

    def build_model(self):
        enable_fast_paths(self.dist)
        return build_mae(self.cfg["model"]).to(self.dist.device)

    def build_train_set(self) -> PretrainImages:
        model_cfg, data_cfg = self.cfg["model"], self.cfg["data"]
        transform = pretrain_transform(data_cfg["augment"], model_cfg["img_size"], data_cfg["crop_scale"])
        noise = NoiseSampler(model_cfg["mask_strategy"], self.model.grid, model_cfg["mask_ratio"])
        return PretrainImages(self.data, transform, noise, subset=data_cfg["subset"], seed=self.cfg["runtime"]["seed"],
                              strict=data_cfg["strict"])

    def build_hooks(self):
        return self.extra_hooks

    def build_config(self):
        return {**self.model.config, "arch": self.cfg["model"]["arch"], "recipe": self.cfg}

    def build_train_loader(self, epoch: int):
        dist = self.dist
        return epoch_loader(self.train_set, epoch, self.cfg["schedule"]["batch_size"], dist.rank, dist.world_size,
                            self.cfg["runtime"]["seed"], self.cfg["data"]["num_workers"], dist.device.startswith("cuda"))

    def run_step(self, net, batch):
        imgs, noise = (t.to(self.dist.device, non_blocking=True) for t in batch)
        loss, _, _ = net(imgs, mask_ratio=self.cfg["model"]["mask_ratio"], noise=noise)
        return loss, imgs.shape[0]

    def describe(self, engine):
        return (f"pretraining {self.cfg['model']['arch']} on {len(self.train_set)} images ({self.train_set.root}); "
                f"effective batch {self.batch}, lr {self.lr:.3g}, epochs {engine.start_epoch}->"
                f"{self.cfg['schedule']['epochs']}, device {self.dist.device}")

    def finish(self, stats: dict) -> dict:
        if not self.dist.is_main:
            return stats
        model_cfg, dataset, seed = self.cfg["model"], self.train_set, self.cfg["runtime"]["seed"]
        pictures = torch.stack([center_tensor(dataset.open_image(i), model_cfg["img_size"])
                                for i in range(min(6, len(dataset)))])  # skips unreadable files as training did
        save_reconstructions(self.model, pictures, self.out / "reconstructions.png", mask_ratio=model_cfg["mask_ratio"],
                             seed=seed)
        root = dataset.root.parent if dataset.root.name == "train" else dataset.root
        return {"metrics": {"loss": stats["loss"] if "loss" in stats else _logged_loss(self.out)},
                "init": {"kind": "scratch"}, "arch": model_cfg["arch"], "device": self.dist.device,
                "dataset": {"name": root.name, "root": str(dataset.root), "split": "train",
                            "subset": self.cfg["data"]["subset"], "images": len(dataset)}}


def _logged_loss(out: Path) -> float:
    """The last epoch's loss in RUN/log.jsonl: a resumed finished run trains nothing, so it reports this again."""
    epochs = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("type") == "epoch"]
    return epochs[-1]["loss"]
