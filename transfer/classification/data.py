"""ImageNet-layout data (root/split/<class>/<image>) and the official MAE classification transforms."""
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from mae_core.errors import MaeBenchError
from mae_core.images import IMAGENET_MEAN, IMAGENET_STD, open_rgb, walk_images, warn_other_extensions
from transfer.data_root import DataLayout
from transfer.leakage import check_distinct_splits, count_leakage

IMAGENET_LAYOUT = DataLayout("imagenet", markers=("train",), under=("imagenet",))  # with train/ and val/
resolve_root = IMAGENET_LAYOUT.resolve  # (the ImageFolder root; dataset name)
SUBSET_MODES = ("total", "per_class")
TRAIN_AUGMENTS = ("linear", "finetune", "none")


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _even_quotas(counts: list[int], n: int) -> list[int]:
    """Split `n` over classes as evenly as their sizes allow; leftover units go to classes drawn with seed 0."""
    quotas = [0] * len(counts)
    rng = np.random.default_rng(0)
    remaining = min(n, sum(counts))
    while remaining:
        open_ = [k for k, c in enumerate(counts) if quotas[k] < c]
        share = remaining // len(open_)
        if share == 0:
            for k in rng.choice(open_, remaining, replace=False):
                quotas[k] += 1
            break
        for k in open_:
            add = min(share, counts[k] - quotas[k])
            quotas[k] += add
            remaining -= add
    return quotas


def subset_samples(per_class: list[list[str]], n: int | None, mode: str = "total") -> list[list[str]]:
    """The same files on every run, whatever the seed: `n` in all (spread evenly over classes) or `n` per class.
    Each class's files are sorted, then drawn in one fixed (seed 0) order, so a smaller subset is
    contained in a larger one."""
    if mode not in SUBSET_MODES:
        raise MaeBenchError(f"subset_mode must be one of {', '.join(SUBSET_MODES)}, got {mode!r}")
    if not n:
        return per_class
    if n < 1:
        raise MaeBenchError(f"subset must be a positive number of images, got {n}")
    counts = [len(files) for files in per_class]
    quotas = [min(n, c) for c in counts] if mode == "per_class" else _even_quotas(counts, n)
    rng = np.random.default_rng(0)
    picked = []
    for files, quota in zip(per_class, quotas):
        order = rng.permutation(len(files))  # drawn for every class, so one class's draw never shifts another's
        picked.append([files[i] for i in sorted(order[:quota])])
    return picked


class ImageFolderDataset(torch.utils.data.Dataset):
    """root/split/<class>/<images>; items are (image, label, ok), ok=False for an unreadable image
    (then the image is zeros) unless `strict`, where it raises."""

    def __init__(self, root: str | Path, split: str, transform, subset: int | None = None,
                 subset_mode: str = "total", strict: bool = False, img_size: int | None = None):
        split_dir = Path(root) / split
        if not split_dir.is_dir():
            raise MaeBenchError(f"dataset split not found: {split_dir}")
        if split == "val":
            check_distinct_splits(Path(root) / "train", split_dir)
        self.root, self.split, self.transform, self.strict = Path(root), split, transform, strict
        self.classes = _class_dirs(split_dir)
        if not self.classes:
            raise MaeBenchError(f"no class folders in {split_dir} (expected {split_dir}/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        others = []  # files of other extensions: counted (`other_files`), reported by the task
        per_class = [walk_images(split_dir / c, others) for c in self.classes]
        self.other_files = others
        empty = [c for c, files in zip(self.classes, per_class) if not files]
        if empty:
            raise MaeBenchError(f"no images in {len(empty)} class folder(s) of {split_dir}: {', '.join(empty[:5])}"
                                f"{'...' if len(empty) > 5 else ''}")
        per_class = subset_samples(per_class, subset, subset_mode)
        self.samples = [(path, label) for label, files in enumerate(per_class) for path in files]
        self.img_size = img_size
        self._blank = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def _placeholder(self) -> torch.Tensor:
        """Zeros shaped like a transformed image (from `img_size`, or by transforming a dummy image once)."""
        if self._blank is None:
            if self.img_size is not None:
                self._blank = torch.zeros(3, self.img_size, self.img_size)
            else:
                self._blank = torch.zeros_like(self.transform(Image.new("RGB", (64, 64))))
        return self._blank

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            img = open_rgb(path)
        except MaeBenchError as e:
            if self.strict:
                raise MaeBenchError(f"{e} (strict mode; set data.strict=False to skip and count unreadable images)") from None
            return self._placeholder(), label, False
        return self.transform(img), label, True


def check_same_classes(a: ImageFolderDataset, b: ImageFolderDataset) -> None:
    """Raise unless two splits have the same class folders (labels would not line up otherwise)."""
    if a.classes == b.classes:
        return
    only_a = sorted(set(a.classes) - set(b.classes))
    only_b = sorted(set(b.classes) - set(a.classes))
    parts = [f"only in {ds.split}: {', '.join(names[:5])}{'...' if len(names) > 5 else ''}"
             for ds, names in ((a, only_a), (b, only_b)) if names]
    raise MaeBenchError(f"class folders differ between {a.root / a.split} and {b.root / b.split} ({'; '.join(parts)})")


def ignored_files(*splits: ImageFolderDataset) -> dict:
    """{split: files of other extensions ignored} for the result record (splits without any left out), with one
    stderr warning for all of them on the main process."""
    counts = {ds.split: len(ds.other_files) for ds in splits if ds.other_files}
    if counts and int(os.environ.get("RANK", "0")) == 0:
        warn_other_extensions([f for ds in splits for f in ds.other_files], splits[0].root)
    return counts


def check_splits(train_set: ImageFolderDataset, val_set: ImageFolderDataset, run_dir=None) -> dict:
    """The dataset record's fields on what the splits hold besides images to score: files of other extensions
    ignored (`ignored_files`) and validation images byte-identical to training ones (`val_duplicates_of_train`,
    `transfer.leakage`). A validation folder that is the training folder has been refused already."""
    fields = {"val_duplicates_of_train": count_leakage([p for p, _ in train_set.samples],
                                                       [p for p, _ in val_set.samples], train_set.root, run_dir)}
    ignored = ignored_files(train_set, val_set)
    if ignored:
        fields["ignored_files"] = ignored
    return fields


def drop_bad(batch) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images, labels, number of unreadable samples dropped) from a collated (image, label, ok) batch."""
    images, labels, ok = batch
    ok = torch.as_tensor(ok, dtype=torch.bool)
    n_bad = int((~ok).sum())
    if n_bad == 0:
        return images, labels, 0
    return images[ok], labels[ok], n_bad


def eval_transform(img_size: int, crop_pct: float | None = None):
    """The official evaluation transform (util/datasets.py): bicubic resize of the short side to
    img_size / crop_pct, centre crop, normalise; crop_pct None is the official choice, 224/256 up to
    224 px and 1.0 above (no border cut off at 384 or 448 px)."""
    if crop_pct is None:
        crop_pct = 224 / 256 if img_size <= 224 else 1.0
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        raise MaeBenchError(f"data.crop_pct must be in (0, 1] or None, got {crop_pct}")
    return T.Compose([T.Resize(int(img_size / crop_pct), interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(img_size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class SingleDrawResizedCrop(T.RandomResizedCrop):
    """The official linear probe's random-size crop (MAE util/crop.py, after BYOL's TF code): one draw of
    the area fraction and the log aspect ratio, width and height clipped to the image; torchvision's
    version retries up to 10 draws that fit and falls back to a centre crop."""

    @staticmethod
    def get_params(img, scale, ratio):
        width, height = TF.get_image_size(img)
        area = width * height * torch.empty(1).uniform_(scale[0], scale[1]).item()
        log_ratio = torch.log(torch.tensor(ratio))  # float32 bounds, as the reference draws them
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item()).item())
        w = min(int(round(math.sqrt(area * aspect))), width)
        h = min(int(round(math.sqrt(area / aspect))), height)
        top = torch.randint(0, height - h + 1, size=(1,)).item()
        left = torch.randint(0, width - w + 1, size=(1,)).item()
        return top, left, h, w


def train_transform(kind: str, img_size: int, cfg: dict):
    """Training augmentation: "linear" (single-draw crop + flip, official linear probe), "finetune" (timm's RandAugment
    + random erasing, official fine-tuning) or "none" (the eval transform, which makes feature caching valid)."""
    if kind == "linear":
        return T.Compose([SingleDrawResizedCrop(img_size, scale=tuple(cfg.get("crop_scale", (0.08, 1.0))),
                                                interpolation=T.InterpolationMode.BICUBIC),
                          T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    if kind == "finetune":
        return create_transform(input_size=img_size, is_training=True, scale=tuple(cfg.get("crop_scale", (0.08, 1.0))),
                                color_jitter=cfg.get("color_jitter"),
                                auto_augment=cfg.get("auto_augment"), interpolation="bicubic",
                                re_prob=cfg.get("reprob", 0.0), re_mode="pixel", re_count=1,
                                mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if kind == "none":
        return eval_transform(img_size, cfg.get("crop_pct"))
    raise MaeBenchError(f"unknown augmentation {kind!r}; choose one of {', '.join(TRAIN_AUGMENTS)}")
