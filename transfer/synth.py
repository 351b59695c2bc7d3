"""Procedural shape scenes written as ImageNet (ImageFolder), COCO instances and ADE20K layouts.

Every scene is a low-contrast textured background, 0-3 small shapes and one large shape painted
last (so it occludes them), all flat-coloured in random colours. The same scene feeds all three layouts:

* ImageNet label: the category of the large shape, the instance with the largest visible area
  (>= DOMINANCE x the visible area of any other instance).
* COCO: one annotation per instance with >= MIN_AREA visible pixels, RLE of its visible mask.
* ADE20K: per-pixel label map; 0 = "other" (gradient backgrounds), 1..K the shape categories,
  K+1.. the remaining background kinds (stripes, checker, noise).
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from tqdm import tqdm

VERSION = "3"
THING_CLASSES = ["circle", "square", "triangle", "star", "ellipse", "ring", "cross", "hexagon"]
BACKGROUND_KINDS = ["stripes", "checker", "noise", "gradient"]
STUFF_CLASSES = ["stripes", "checker", "noise"]  # "gradient" is deliberately label 0 ("other")
ADE_CLASSES = THING_CLASSES + STUFF_CLASSES  # ADE ids 1..len(ADE_CLASSES); 0 = "other"
IMAGENET_CLASSES = [f"n{i:02d}_{name}" for i, name in enumerate(THING_CLASSES)]
BG_LABEL = {k: (ADE_CLASSES.index(k) + 1 if k in STUFF_CLASSES else 0) for k in BACKGROUND_KINDS}
MIN_AREA = 8  # instances with fewer visible pixels are erased from the scene
DOMINANCE = 1.3
# Version 3 scenes: the label must be the shape, the thing a masked autoencoder learns to complete. One large
# flat-coloured shape near the centre (radius as a fraction of the image side), a few small ones under it, a
# background of one kind at reduced contrast, little pixel noise. Colours are random, so they carry no label.
LARGE_RADIUS = (0.30, 0.42)
SMALL_RADIUS = (0.07, 0.12)
CENTRE_JITTER = 0.12
MAX_DISTRACTORS = 3
BG_CONTRAST = 0.35
MIN_CONTRAST = 90.0
NOISE_STD = 3.0
SPLITS = (("train", "train2017", "training"), ("val", "val2017", "validation"))

_K = len(THING_CLASSES)


def _unit_polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices (N, 2) of a shape of circumradius ~1 centred at the origin."""
    if kind == "square":
        return np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    if kind in ("triangle", "hexagon"):
        n = 3 if kind == "triangle" else 6
        t = np.pi / 2 + 2 * np.pi * np.arange(n) / n
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "star":
        t = np.pi / 2 + np.pi * np.arange(10) / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([rad * np.cos(t), rad * np.sin(t)], 1)
    if kind == "cross":
        w = 0.33
        return np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w],
                         [w, 1], [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w]])
    if kind == "ellipse":
        t = 2 * np.pi * np.arange(40) / 40
        return np.stack([np.cos(t), rng.uniform(0.4, 0.65) * np.sin(t)], 1)
    raise ValueError(f"no polygon for shape {kind!r}")


def _shape_mask(rng: np.random.Generator, kind: str, cx: float, cy: float, r: float,
                size: int) -> np.ndarray:
    """Hard boolean mask of one shape at final resolution."""
    img = Image.new("1", (size, size), 0)
    draw = ImageDraw.Draw(img)
    if kind in ("circle", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        if kind == "ring":
            ri = r * rng.uniform(0.45, 0.65)
            draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    else:
        th = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        pts = _unit_polygon(kind, rng) @ rot.T * r + (cx, cy)
        draw.polygon([tuple(p) for p in pts.tolist()], fill=1)
    return np.array(img, dtype=bool)


def _texture(rng: np.random.Generator, kind: str, size: int, fine: bool = False) -> np.ndarray:
    """Float (size, size, 3) texture of the given background kind in random colours."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    th = rng.uniform(0, np.pi)
    u = xx * np.cos(th) + yy * np.sin(th)
    v = -xx * np.sin(th) + yy * np.cos(th)
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == "stripes":
        period = rng.uniform(3, 6) if fine else rng.uniform(4, max(5.0, size / 3))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(2, 4) if fine else rng.uniform(3, max(4.0, size / 5))
        t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    elif kind == "noise":
        g = int(rng.integers(3, 9))
        low = Image.fromarray(rng.integers(0, 256, (g, g, 3), dtype=np.uint8))
        return np.asarray(low.resize((size, size), Image.BICUBIC), dtype=np.float32)
    elif kind == "gradient":
        if rng.random() < 0.5:
            t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
        else:
            c = rng.uniform(0, size, 2)
            d = np.hypot(xx - c[0], yy - c[1])
            t = d / max(float(d.max()), 1e-6)
    else:
        raise ValueError(f"unknown texture kind {kind!r}")
    return c1 + t[..., None] * (c2 - c1)


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Background image (float) of one kind at reduced contrast, and its per-pixel stuff labels."""
    kind = BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))]
    img = _texture(rng, kind, size)
    mean = img.reshape(-1, 3).mean(0)
    return mean + BG_CONTRAST * (img - mean), np.full((size, size), BG_LABEL[kind], np.uint8)


def _plan(rng: np.random.Generator, size: int, target: int) -> list:
    """Paint order of (class index, cx, cy, radius): small distractors first, the large `target` shape last."""
    others = [c for c in range(_K) if c != target]
    plan = []
    for _ in range(int(rng.integers(0, MAX_DISTRACTORS + 1))):
        r = rng.uniform(*SMALL_RADIUS) * size
        plan.append((others[rng.integers(len(others))], rng.uniform(r, size - r), rng.uniform(r, size - r), r))
    cx, cy = size / 2 + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, 2) * size
    return plan + [(target, cx, cy, rng.uniform(*LARGE_RADIUS) * size)]


def render_scene(rng: np.random.Generator, img_size: int, target: int | None = None):
    """Render one scene.

    Returns (image uint8 HxWx3, label_map uint8 HxW, instances, dominant) where instances is a
    list of {"category_id": 1..K, "mask": bool HxW visible mask} in paint order and dominant is
    the 0-based class index of the largest visible instance (== target when given).
    """
    size = int(img_size)
    target = int(rng.integers(_K)) if target is None else int(target)
    bg_img, label = _background(rng, size)
    for _ in range(20):
        plan = _plan(rng, size, target)
        owner = np.full((size, size), -1, np.int16)
        for j, (cls, cx, cy, r) in enumerate(plan):
            owner[_shape_mask(rng, THING_CLASSES[cls], cx, cy, max(r, 1.5), size)] = j
        areas = np.bincount(owner.ravel() + 1, minlength=len(plan) + 1)[1:]
        if areas[-1] >= MIN_AREA and areas[-1] >= DOMINANCE * areas[:-1].max(initial=0):
            break
    else:
        raise RuntimeError("could not compose a scene with a dominant object")

    img = bg_img.copy()
    bg_mean = bg_img.reshape(-1, 3).mean(0)
    instances = []
    for j, (cls, *_) in enumerate(plan):
        vis = owner == j
        if areas[j] < MIN_AREA:
            continue  # erased: background (already in img/label) shows through
        for _ in range(20):  # a flat colour that stands out from the background, otherwise random
            fill = rng.uniform(0, 255, 3)
            if np.linalg.norm(fill - bg_mean) >= MIN_CONTRAST:
                break
        img[vis] = fill
        label[vis] = cls + 1
        instances.append({"category_id": cls + 1, "mask": vis})
    img += rng.normal(0, NOISE_STD, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label, instances, target


def _check_args(n_train, n_val, img_size, seed) -> None:
    for name, val in (("n_train", n_train), ("n_val", n_val), ("img_size", img_size), ("seed", seed)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {val!r}")
    if n_train < _K or n_val < _K:
        raise ValueError(f"n_train and n_val must be >= {_K} (number of classes), got {n_train}, {n_val}")
    if img_size < 16:
        raise ValueError(f"img_size must be >= 16, got {img_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def generate(out: str | Path, n_train: int = 600, n_val: int = 150, img_size: int = 64,
             seed: int = 0, progress: bool = True) -> dict:
    """Write the same synthetic scenes as ImageNet, COCO and ADE20K layouts under `out`.

    Scene i of a split has dominant class i % K (exactly balanced). If `out` holds a previous
    synth.json, its imagenet/, coco/ and ade20k/ trees are removed first so no stale files remain.
    """
    _check_args(n_train, n_val, img_size, seed)
    t0 = time.perf_counter()
    out = Path(out)
    roots = {"imagenet": out / "imagenet", "coco": out / "coco",
             "ade20k": out / "ade20k" / "ADEChallengeData2016"}
    if (out / "synth.json").is_file():
        for sub in ("imagenet", "coco", "ade20k"):
            shutil.rmtree(out / sub, ignore_errors=True)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(THING_CLASSES)]
    counts = {}
    bar = tqdm(total=n_train + n_val, desc="synth", disable=None if progress else True)  # None: off when stderr is no terminal
    for split_idx, (split, coco_split, ade_split) in enumerate(SPLITS):
        n = n_train if split == "train" else n_val
        dirs = {"coco": roots["coco"] / coco_split,
                "ade_img": roots["ade20k"] / "images" / ade_split,
                "ade_ann": roots["ade20k"] / "annotations" / ade_split}
        for cls in IMAGENET_CLASSES:
            (roots["imagenet"] / split / cls).mkdir(parents=True, exist_ok=True)
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            stem = f"synth_{split}_{i:06d}"
            rng = np.random.default_rng([seed, split_idx, i])
            img, label, insts, dom = render_scene(rng, img_size, target=i % _K)
            png = _png_bytes(img)
            (roots["imagenet"] / split / IMAGENET_CLASSES[dom] / f"{stem}.png").write_bytes(png)
            (dirs["coco"] / f"{stem}.png").write_bytes(png)
            Image.fromarray(img).save(dirs["ade_img"] / f"{stem}.jpg", quality=95)
            (dirs["ade_ann"] / f"{stem}.png").write_bytes(_png_bytes(label))
            images.append({"id": i + 1, "file_name": f"{stem}.png", "width": img_size, "height": img_size})
            for inst in insts:
                rle = mask_utils.encode(np.asfortranarray(inst["mask"].astype(np.uint8)))
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": inst["category_id"],
                             "bbox": [float(x) for x in mask_utils.toBbox(rle)],
                             "area": float(mask_utils.area(rle)), "iscrowd": 0,
                             "segmentation": {"size": [int(s) for s in rle["size"]],
                                              "counts": rle["counts"].decode("ascii")}})
            bar.update()
        _write_json(roots["coco"] / "annotations" / f"instances_{coco_split}.json", {
            "info": {"description": "mae-bench synthetic shapes", "version": VERSION, "year": 2017},
            "licenses": [], "images": images, "annotations": anns, "categories": categories})
        counts[split] = {"images": n, "annotations": len(anns)}
    bar.close()
    _write_json(roots["ade20k"] / "classes.json",
                {str(i): name for i, name in enumerate(["other"] + ADE_CLASSES)})
    _write_json(out / "synth.json", {
        "generator": "mae-bench-synth", "version": VERSION, "seed": seed, "n_train": n_train,
        "n_val": n_val, "img_size": img_size, "thing_classes": THING_CLASSES,
        "imagenet_classes": IMAGENET_CLASSES, "ade_classes": ["other"] + ADE_CLASSES,
        "background_labels": BG_LABEL})
    return {"out": str(out), "counts": counts, "num_classes": _K, "num_ade_classes": len(ADE_CLASSES) + 1,
            "paths": {k: str(v) for k, v in roots.items()},
            "seconds": round(time.perf_counter() - t0, 3)}
