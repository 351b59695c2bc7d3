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


def walk_images(root: str | Path, others: list | None = None) -> list[str]:
    """Image files under `root`, recursively, sorted. Folder links are followed only into folders inside `root`
    not visited yet, so a link loop or a link out of `root` (e.g. `cls/up -> ..`, which would file other classes'
    images under this one) neither repeats nor relabels images; each skipped link is named in a warning.
    Files of other extensions (but hidden ones, such as .DS_Store) are appended to `others` when given."""
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
        for f in sorted(files):  # (the first other file is named in a warning: the same one every run)
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(folder, f))
            elif others is not None and not f.startswith("."):
                others.append(os.path.join(folder, f))
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
    others = []
    files = [Path(p) for p in walk_images(root, others) if os.path.isfile(p)]
    if not files:
        raise MaeBenchError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    warn_other_extensions(others, root)
    return files


def warn_other_extensions(others: list, where) -> None:
    """One stderr line for files left out because their extension is not an image's."""
    if others:
        print(f"warning: {len(others)} files with other extensions ignored under {where} (e.g. "
              f"{os.path.basename(others[0])}; read: {' '.join(IMAGE_EXTENSIONS)})", file=sys.stderr)


HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_8bit(im: Image.Image, path: str | Path) -> Image.Image:
    """A single-channel image of more than 8 bits as 8-bit "L" (PIL's own convert clips these to 0..255, so a 16-bit
    image becomes all white and a 0..1 float one all black). 16-bit (modes I;16*, and I with values in 0..65535, as
    16-bit data is also decoded): v x 255 / 65535, rounded. Float (F) with values in [0, 1]: v x 255, rounded.
    Anything else (32-bit integers above 65535, negative values, floats outside [0, 1] or not finite) has no one
    reading as 8 bits and raises MaeBenchError. (16-bit RGB PNG and TIFF decode as 8-bit RGB in PIL already.)"""
    a = np.asarray(im)
    if im.mode == "F":
        if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise MaeBenchError(f"cannot decode image {path}: a float image with values in "
                                f"[{np.nanmin(a):g}, {np.nanmax(a):g}], not [0, 1]; convert it to 8 bits")
        return Image.fromarray(np.rint(a.astype(np.float64) * 255).astype(np.uint8), "L")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise MaeBenchError(f"cannot decode image {path}: a {im.mode} image with values in [{a.min()}, {a.max()}], "
                            "not 16-bit [0, 65535]; convert it to 8 bits")
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")  # round half up


def open_rgb(path: str | Path, exif_transpose: bool = False) -> Image.Image:
    """Decode an image fully as RGB; a corrupt or truncated file raises MaeBenchError. With `exif_transpose`
    the EXIF orientation is applied, as detectron2's read_image and mmcv's imread do (COCO boxes and
    masks are for the upright image); the official MAE ImageNet loader (PIL, torchvision's ImageFolder) does not.
    Images of more than 8 bits per channel are scaled to 8 bits (`to_8bit`)."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im) if exif_transpose else im
            if im.mode in HIGH_DEPTH_MODES:
                im = to_8bit(im, path)
            return im.convert("RGB")
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
