"""Reading images from disk: listing, decoding with clear errors, normalisation constants."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MaeBenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def list_images(root: str | Path) -> list[Path]:
    """All image files under `root` (recursively), sorted; a clear error if there are none."""
    root = Path(root)
    if not root.exists():
        raise MaeBenchError(f"image folder not found: {root}")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
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
