"""Reading images from disk: listing, decoding with clear errors, normalisation constants."""
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MaeBenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def walk_images(root: str | Path) -> list[str]:
    """Image files under `root`, recursively, sorted. Folder links are followed only into folders inside `root`
    not visited yet, so a link loop or a link out of `root` (e.g. `cls/up -> ..`, which would file other classes'
    images under this one) neither repeats nor relabels images; each skipped link is named in a warning."""
    top = os.path.realpath(root)
    seen, found, skipped = {top}, [], []
    for folder, dirs, files in os.walk(root, followlinks=True):  # os.walk, not rglob: no stat per file
        keep = []
        for name in sorted(dirs):
            real = os.path.realpath(os.path.join(folder, name))
            if real in seen or os.path.commonpath([top, real]) != top:
                skipped.append(os.path.join(folder, name))
            else:
                seen.add(real)
                keep.append(name)
        dirs[:] = keep
        found += [os.path.join(folder, f) for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    if skipped:
        print(f"warning: not following {len(skipped)} folder link(s) that loop or leave {root}: "
              f"{', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}", file=sys.stderr)
    return sorted(found)


def list_images(root: str | Path) -> list[Path]:
    """All image files under `root` (`walk_images`), as paths; a clear error if there are none."""
    root = Path(root)
    if not root.exists():
        raise MaeBenchError(f"image folder not found: {root}")
    if root.is_file():
        return [root]
    files = [Path(p) for p in walk_images(root) if os.path.isfile(p)]
    if not files:
        raise MaeBenchError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return files


def open_rgb(path: str | Path, exif_transpose: bool = False) -> Image.Image:
    """Decode an image fully as RGB; a corrupt or truncated file raises MaeBenchError. With `exif_transpose`
    the EXIF orientation is applied, as detectron2's read_image and mmcv's imread do (COCO boxes and
    masks are for the upright image); the official MAE ImageNet loader (PIL, torchvision's ImageFolder) does not."""
    try:
        with Image.open(path) as im:
            return (ImageOps.exif_transpose(im) if exif_transpose else im).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise MaeBenchError(f"cannot decode image {path}: {e}") from None


def center_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """Resize the short side to `size` (bicubic), centre-crop, normalise: [3, size, size]."""
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return normalize(x)


def normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(3, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize`, on [..., 3, H, W]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return x * std + mean
