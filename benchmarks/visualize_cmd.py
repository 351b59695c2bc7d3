"""`mae-bench visualize`: reconstructions of a folder of images by an MAE checkpoint."""
from pathlib import Path

import torch

from mae_core.weights import load_mae
from mae_core.images import center_tensor, list_images, open_rgb
from mae_core.visualize import save_reconstructions


def load_batch(images: str | Path, num: int, size: int) -> torch.Tensor:
    """The first `num` images under a folder (sorted), centre-cropped and normalised."""
    files = list_images(images)[:num]
    return torch.stack([center_tensor(open_rgb(f), size) for f in files])


def visualize(ckpt: str, images: str, out: str, cfg) -> Path:
    """Load the MAE, read the images at the checkpoint's size (or cfg.img_size), write the PNG."""
    kwargs = {"img_size": cfg.img_size} if cfg.img_size else {}
    model, info = load_mae(ckpt, **kwargs)
    size = cfg.img_size or model.config["img_size"]
    imgs = load_batch(images, cfg.num_images, size)
    return save_reconstructions(model, imgs, out, mask_ratio=cfg.mask_ratio, seed=cfg.seed)
