"""The paper's Figure 2 rows: masked input, reconstruction, reconstruction with the
visible patches pasted back, original."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .atomic import atomic_write
from .images import denormalize
from .masking import make_noise
from .models_mae import MaskedAutoencoderViT

COLUMNS = ("masked", "reconstruction", "reconstruction + visible", "original")


@torch.no_grad()
def reconstruct(model: MaskedAutoencoderViT, imgs: torch.Tensor, mask_ratio: float = 0.75,
                noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Run the model and return the four panels as normalised images [B, 3, H, W].

    With norm_pix_loss the prediction is in per-patch normalised units; it is mapped
    back with each target patch's own mean and variance, as in the official demo."""
    model.eval()
    grid = model.grid_of(imgs)
    _, pred, mask = model(imgs, mask_ratio=mask_ratio, noise=noise)
    if model.norm_pix_loss:
        target = model.patchify(imgs)
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        pred = pred * (var + 1.0e-6) ** 0.5 + mean
    recon = model.unpatchify(pred, grid)
    pixel_mask = model.unpatchify(mask.unsqueeze(-1).expand(-1, -1, pred.shape[-1]), grid)
    return {"masked": imgs * (1 - pixel_mask),
            "reconstruction": recon,
            "reconstruction + visible": imgs * (1 - pixel_mask) + recon * pixel_mask,
            "original": imgs,
            "mask": pixel_mask}


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (denormalize(x.float().cpu()).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def render_grid(panels: dict[str, torch.Tensor], scale: int = 2, pad: int = 4) -> Image.Image:
    """One row per image, one column per panel, with a header naming the columns."""
    n, _, h, w = panels["original"].shape
    cell_h, cell_w = h * scale, w * scale
    header = 14
    width = max(len(COLUMNS) * (cell_w + pad) + pad, 4 * 150)
    col_w = (width - pad) // len(COLUMNS)
    canvas = Image.new("RGB", (width, header + n * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(COLUMNS):
        draw.text((pad + c * col_w, 1), name, fill="black")
        for r in range(n):
            masked = panels[name][r].clone()
            if name == "masked":  # grey, not black, where patches were removed
                grey = torch.zeros_like(masked)  # zero in normalised units is the dataset mean
                masked = torch.where(panels["mask"][r].bool(), grey, masked)
            tile = Image.fromarray(_to_uint8(masked)).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (pad + c * col_w, header + pad + r * (cell_h + pad)))
    return canvas


def save_reconstructions(model: MaskedAutoencoderViT, imgs: torch.Tensor, out: str | Path,
                         mask_ratio: float = 0.75, seed: int = 0) -> Path:
    """Write the Figure-2 style PNG for a batch of normalised images."""
    g = torch.Generator().manual_seed(seed)
    grid = model.grid_of(imgs)
    noise = make_noise(model.mask_strategy, imgs.shape[0], grid, mask_ratio, generator=g)
    device = next(model.parameters()).device
    panels = reconstruct(model, imgs.to(device), mask_ratio, noise.to(device))
    scale = max(1, 128 // imgs.shape[-1])
    picture = render_grid({k: v.cpu() for k, v in panels.items()}, scale=scale)
    return atomic_write(out, lambda tmp: picture.save(tmp, format="PNG"))
