"""ADEChallengeData2016 (real or synthetic) and mmsegmentation's ADE20K pipelines.

Layout: ROOT/images/{training,validation}/<name>.jpg with ROOT/annotations/<split>/<name>.png
(0 = other, 1..K classes). reduce_zero_label: 0 -> 255 (ignored), c -> c - 1.
Training: random resize (ratio 0.5-2.0 of `scale`, keep ratio), random crop with the category-ratio
rule, flip, photometric distortion, pad to the crop (image 0 after normalisation, label 255). Evaluation:
resize into `scale` (short side 512 for (2048, 512)), the label stays at its original size. Resizing is
mmcv's cv2 backend (bilinear without antialiasing; nearest for label maps), as in mmseg's pipelines.
"""
import json
from pathlib import Path

import cv2  # installed with mmengine; mmcv.imresize's backend
import numpy as np
import torch
from PIL import Image

from mae_core.data import deterministic_subset
from mae_core.errors import MaeBenchError
from mae_core.file_cache import FileCache, cache_dir
from mae_core.images import HIGH_DEPTH_MODES, IMAGENET_MEAN, IMAGENET_STD, open_rgb, to_8bit
from transfer.data_root import DataLayout
from transfer.leakage import check_distinct_splits

from .metrics import IGNORE_INDEX

SPLITS = {"train": "training", "val": "validation"}
ADE20K_CLASSES = 150
MEAN = np.array(IMAGENET_MEAN, dtype=np.float32) * 255
STD = np.array(IMAGENET_STD, dtype=np.float32) * 255


ADE20K_LAYOUT = DataLayout("ade20k", markers=("images", "annotations"),
                           under=("ade20k/ADEChallengeData2016", "ADEChallengeData2016"),
                           missing="no ADE20K layout under {data} (expected ADEChallengeData2016/images/ and annotations/)")
resolve_root = ADE20K_LAYOUT.resolve  # (the ADEChallengeData2016 folder; dataset name)


def read_num_classes(root: Path) -> int:
    """Classes without 'other': from classes.json ({"0": "other", "1": ...}) when present, else 150."""
    path = root / "classes.json"
    if not path.exists():
        return ADE20K_CLASSES
    try:
        names = json.loads(path.read_text())
        return len(names) - 1
    except (OSError, ValueError, TypeError) as e:
        raise MaeBenchError(f"cannot read {path}: {e}") from None


def list_pairs(root: Path, split: str, subset: int | None = None) -> list[tuple[Path, Path]]:
    """(image, label map) pairs matched by file stem, sorted by name; `subset` of them drawn as every task's
    --subset is (`deterministic_subset`: the same images for every seed, a smaller subset inside a larger one).
    A split folder that is missing or an image without its label map (or the reverse) is an error."""
    sub = SPLITS[split]
    img_dir, ann_dir = root / "images" / sub, root / "annotations" / sub
    for d in (img_dir, ann_dir):
        if not d.is_dir():
            raise MaeBenchError(f"ADE20K folder not found: {d}")
    images = {p.stem: p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    labels = {p.stem: p for p in ann_dir.iterdir() if p.suffix.lower() == ".png"}
    lone_img, lone_ann = sorted(images.keys() - labels.keys()), sorted(labels.keys() - images.keys())
    if lone_img or lone_ann:
        parts = [f"{len(x)} {what} (e.g. {', '.join(x[:3])})" for x, what in
                 ((lone_img, f"images without a label map in {ann_dir}"), (lone_ann, f"label maps without an image in {img_dir}"))
                 if x]
        raise MaeBenchError(f"ADE20K {split} split does not pair up: {'; '.join(parts)}")
    if not images:
        raise MaeBenchError(f"no images in {img_dir}")
    names = sorted(images)
    names = [names[i] for i in deterministic_subset(len(names), subset)]
    return [(images[n], labels[n]) for n in names]


def label_ids(path: Path, cache: FileCache | None = None) -> list[list[int]]:
    """[[id, pixels], ...] of the ids a label map holds, from PIL's histogram (cheap: no array is built for 8-bit
    maps), cached by the file's size and mtime."""
    ids = cache.get(path) if cache is not None else None
    if ids is not None:
        return ids
    try:
        with Image.open(path) as im:
            if im.mode not in LABEL_MODES:
                raise MaeBenchError(f"label map {path} has mode {im.mode}; expected a single-channel PNG of class ids")
            if im.mode in ("L", "P"):
                hist = im.histogram()
                ids = [[i, n] for i, n in enumerate(hist) if n]
            else:
                values, counts = np.unique(np.asarray(im), return_counts=True)
                ids = [[int(v), int(n)] for v, n in zip(values, counts)]
    except (OSError, SyntaxError, ValueError) as e:
        raise MaeBenchError(f"cannot decode label map {path}: {e}") from None
    if cache is not None:
        cache.put(path, ids)
    return ids


def check_pairs(pairs: list[tuple[Path, Path]], num_classes: int, read_labels: bool, skip_bad_images: bool,
                cache: FileCache | None = None) -> int:
    """Fail in seconds, before any training, on a broken split: every image and label map must open with the
    same size and the label maps be single-channel; with `read_labels` every label map's ids are checked (a class
    id above the class count, 255 aside, is an error naming the first such file; histograms, cached in `cache`).
    Returns the number of labelled pixels (ids 1..num_classes). Unreadable images are left to the training loop
    to skip and count when `skip_bad_images`."""
    labelled = 0
    for img_path, ann_path in pairs:
        try:
            with Image.open(ann_path) as ann:
                ann_size, mode = ann.size, ann.mode
        except (OSError, SyntaxError, ValueError) as e:
            raise MaeBenchError(f"cannot open label map {ann_path}: {e}") from None
        try:
            with Image.open(img_path) as img:
                img_size = img.size
                if img.mode in HIGH_DEPTH_MODES:  # rare, so decoded now: one that has no 8-bit reading fails here
                    to_8bit(img, img_path)
        except (OSError, SyntaxError, ValueError, MaeBenchError) as e:
            if skip_bad_images:  # counted when training reaches it
                continue
            raise MaeBenchError(str(e) if isinstance(e, MaeBenchError) else f"cannot open image {img_path}: {e}") from None
        if mode not in LABEL_MODES:
            raise MaeBenchError(f"label map {ann_path} has mode {mode}; expected a single-channel PNG of class ids")
        if img_size != ann_size:
            raise MaeBenchError(f"image {img_path} is {img_size[0]}x{img_size[1]} but its label map is "
                                f"{ann_size[0]}x{ann_size[1]}")
        if read_labels:
            ids = label_ids(ann_path, cache)
            bad = [i for i, _ in ids if i > num_classes and i != IGNORE_INDEX]
            if bad:
                raise MaeBenchError(f"label map {ann_path} has class id {max(bad)} but the set has {num_classes} "
                                    "classes")
            labelled += sum(n for i, n in ids if 1 <= i <= num_classes)
    return labelled


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K ids 0..K -> 255 (ignore) for 0, c - 1 for c >= 1 (mmseg's reduce_zero_label)."""
    out = label.astype(np.int64) - 1
    out[label == 0] = IGNORE_INDEX
    out[out == IGNORE_INDEX - 1] = IGNORE_INDEX
    return out.astype(np.uint8)


LABEL_MODES = ("L", "P", "I;16", "I")


def read_label(path: Path, num_classes: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in LABEL_MODES:
                raise MaeBenchError(f"label map {path} has mode {im.mode}; expected a single-channel PNG of class ids")
            raw = np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise MaeBenchError(f"cannot decode label map {path}: {e}") from None
    bad = raw[(raw > num_classes) & (raw != IGNORE_INDEX)]  # 255 is already 'ignore' in some exports
    if bad.size:
        raise MaeBenchError(f"label map {path} has class id {int(bad.max())} but the set has {num_classes} classes")
    return reduce_zero_label(raw)


def rescale_size(w: int, h: int, scale) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest size with long side <= max(scale) and short side <= min(scale)."""
    f = min(max(scale) / max(w, h), min(scale) / min(w, h))
    return int(w * f + 0.5), int(h * f + 0.5)


def resize(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """mmcv.imresize (cv2 backend) to size (w, h): bilinear, or nearest for label maps."""
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((img.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1).copy())


def random_crop_box(label: np.ndarray, crop: int, rng: np.random.Generator, cat_max_ratio: float) -> tuple:
    """mmseg's RandomCrop: up to 10 draws until no single class covers >= cat_max_ratio of the labelled
    pixels in the crop (and more than one class is present); the last draw otherwise."""
    h, w = label.shape

    def draw():
        y, x = rng.integers(0, max(h - crop, 0) + 1), rng.integers(0, max(w - crop, 0) + 1)
        return y, min(y + crop, h), x, min(x + crop, w)

    box = draw()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            ids, cnt = np.unique(label[box[0]:box[1], box[2]:box[3]], return_counts=True)
            cnt = cnt[ids != IGNORE_INDEX]
            if len(cnt) > 1 and cnt.max() / cnt.sum() < cat_max_ratio:
                break
            box = draw()
    return box


def photometric_distortion(img: np.ndarray, rng: np.random.Generator, brightness=32, contrast=(0.5, 1.5),
                           saturation=(0.5, 1.5), hue=18) -> np.ndarray:
    """mmseg's PhotoMetricDistortion on an RGB uint8 image, its draws in its order: brightness, contrast (before
    or after), saturation and hue (each in its own OpenCV HSV round trip; hue shift in [-hue, hue) of 180),
    each with probability 0.5."""
    def convert(x, alpha=1.0, beta=0.0):
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def do_contrast(x):
        return convert(x, alpha=rng.uniform(*contrast)) if rng.integers(2) else x

    if rng.integers(2):
        img = convert(img, beta=rng.uniform(-brightness, brightness))
    mode = rng.integers(2)
    if mode == 1:
        img = do_contrast(img)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = convert(hsv[..., 1], alpha=rng.uniform(*saturation))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + rng.integers(-hue, hue)) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if mode == 0:
        img = do_contrast(img)
    return img


def train_pipeline(img: Image.Image, label: np.ndarray, rng: np.random.Generator, data_cfg: dict, crop: int):
    """(image tensor [3, crop, crop], label [crop, crop]) with the training pipeline of the recipe's `data`."""
    ratio = rng.uniform(*data_cfg["ratio_range"])
    # mmcv's RandomResize truncates the scale
    size = rescale_size(*img.size, [int(s * ratio) for s in data_cfg["scale"]])
    img, label = resize(np.asarray(img), size), resize(label, size, nearest=True)
    y1, y2, x1, x2 = random_crop_box(label, crop, rng, data_cfg["cat_max_ratio"])
    img, label = img[y1:y2, x1:x2], label[y1:y2, x1:x2]
    if rng.random() < data_cfg["flip_prob"]:
        img, label = img[:, ::-1], label[:, ::-1]
    if data_cfg["photometric"]:
        img = photometric_distortion(np.ascontiguousarray(img), rng)
    x = torch.zeros(3, crop, crop)
    y = torch.full((crop, crop), IGNORE_INDEX, dtype=torch.long)
    x[:, :img.shape[0], :img.shape[1]] = to_tensor(np.asarray(img))
    y[:label.shape[0], :label.shape[1]] = torch.from_numpy(np.ascontiguousarray(label)).long()
    return x, y


class ADE20KDataset(torch.utils.data.Dataset):
    """Training items: (image, label, ok) for an index drawn with a per-sample seed `(index, seed)`.
    Evaluation items: (image resized into `scale`, label at its own size, name)."""

    def __init__(self, root: Path, split: str, data_cfg: dict, num_classes: int, train: bool, subset=None,
                 crop: int = 512, run_dir=None):
        self.root, self.split, self.data_cfg, self.num_classes, self.train = root, split, data_cfg, num_classes, train
        self.crop = crop
        if split == "val":
            for kind in ("images", "annotations"):
                check_distinct_splits(root / kind / SPLITS["train"], root / kind / SPLITS["val"])
        self.pairs = list_pairs(root, split, subset)
        self.strict = data_cfg["strict"]
        # every label map of both splits is checked up front (a short run may never sample a bad training one)
        cache = FileCache(cache_dir(root, run_dir), "label_ids")
        labelled = check_pairs(self.pairs, num_classes, read_labels=True, skip_bad_images=train and not self.strict,
                               cache=cache)
        cache.save()
        if not train and not labelled:
            raise MaeBenchError(f"every pixel of the {len(self.pairs)} validation label maps in "
                                f"{root / 'annotations' / SPLITS[split]} is 0 (other) or 255 (ignored): nothing to score")

    def __len__(self):
        return len(self.pairs)

    def name(self, i: int) -> str:
        return self.pairs[i][0].stem

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, 0)
        img_path, ann_path = self.pairs[i]
        label = read_label(ann_path, self.num_classes)
        if self.train:
            try:
                img = open_rgb(img_path)
            except MaeBenchError:
                if self.strict:
                    raise
                c = self.crop  # nothing labelled: the sample adds no loss
                return torch.zeros(3, c, c), torch.full((c, c), IGNORE_INDEX, dtype=torch.long), False
            self._check_size(img, label, img_path)
            x, y = train_pipeline(img, label, np.random.default_rng(seed), self.data_cfg, self.crop)
            return x, y, True
        img = open_rgb(img_path)  # an unreadable evaluation image cannot be scored: always an error
        self._check_size(img, label, img_path)
        img = resize(np.asarray(img), rescale_size(*img.size, self.data_cfg["test_scale"]))
        return to_tensor(img), torch.from_numpy(label).long(), img_path.stem

    @staticmethod
    def _check_size(img: Image.Image, label: np.ndarray, path: Path) -> None:
        if img.size != (label.shape[1], label.shape[0]):
            raise MaeBenchError(f"image {path} is {img.size[0]}x{img.size[1]} but its label map is "
                                f"{label.shape[1]}x{label.shape[0]}")


class EpochSampler(torch.utils.data.Sampler):
    """`per_rank` items per epoch for one rank: reshuffled passes over the set (seeded by seed and epoch),
    each index paired with its own augmentation seed, so a resumed run sees the same samples."""

    def __init__(self, n: int, per_rank: int, seed: int, epoch: int, rank: int = 0, world: int = 1):
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        need = per_rank * world
        order = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-need // n))])[:need]
        seeds = torch.randint(0, 2**31 - 1, (need,), generator=g)
        self.items = [(int(order[k]), int(seeds[k])) for k in range(rank, need, world)]

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)
