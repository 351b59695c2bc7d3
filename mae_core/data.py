"""Pretraining data: an ImageFolder tree or a flat folder of images, with augmentations
and mask noise drawn from a per-sample seed (seed, epoch, index).

Deriving every random number from (seed, epoch, index) makes a sample's crop and mask
independent of the process layout, worker count and resume point, which is what lets a
resumed or 2-process run equal an unbroken 1-process one.
"""
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import transforms as T

from .errors import MaeBenchError
from .images import IMAGENET_MEAN, IMAGENET_STD, list_images, open_rgb
from .threads import worker_init

AUGMENTATIONS = ("none", "fixed_crop", "rrc", "rrc_jitter")


def pretrain_transform(augment: str, size: int, crop_scale=(0.2, 1.0)):
    """Paper Table 1f: none (centre crop), fixed-size random crop, random-size crop (default),
    random-size crop + colour jitter; all but `none` with horizontal flips."""
    if augment not in AUGMENTATIONS:
        raise MaeBenchError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
    bicubic = T.InterpolationMode.BICUBIC
    resize = int(round(size * 256 / 224))
    steps = {
        "none": [T.Resize(resize, interpolation=bicubic), T.CenterCrop(size)],
        "fixed_crop": [T.Resize(resize, interpolation=bicubic), T.RandomCrop(size), T.RandomHorizontalFlip()],
        "rrc": [T.RandomResizedCrop(size, scale=tuple(crop_scale), interpolation=bicubic), T.RandomHorizontalFlip()],
        "rrc_jitter": [T.RandomResizedCrop(size, scale=tuple(crop_scale), interpolation=bicubic),
                       T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4)],
    }[augment]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def deterministic_subset(n_total: int, n: int | None) -> list[int]:
    """The same `n` of range(n_total) for every seed and run (sorted; drawn in one fixed seed-0 order, so a
    smaller subset is inside a larger one), or all of them. Every task's --subset draws its images this way
    (classification per class, to keep the classes balanced)."""
    if not n or n >= n_total:
        return list(range(n_total))
    if n < 1:
        raise MaeBenchError(f"subset must be a positive number of images, got {n}")
    return sorted(np.random.default_rng(0).permutation(n_total)[:n].tolist())


def sample_seed(*key: int) -> int:
    return int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)


def pretrain_folder(root: str | Path) -> Path:
    """The folder pretraining reads: ROOT/train of an ImageNet-style root (the official code reads
    data_path/train; also the synthetic root's imagenet/train), else ROOT itself. Never a val/ split."""
    root = Path(root)
    if not root.is_dir():
        raise MaeBenchError(f"data folder not found: {root}")
    for train in (root / "train", root / "imagenet" / "train"):
        if train.is_dir():
            return train
    if (root / "val").is_dir():
        raise MaeBenchError(f"{root} has val/ but no train/; pretraining never reads validation images")
    return root


class PretrainImages(Dataset):
    """Images under `root`, or under its train/ split (`pretrain_folder`); ImageFolder classes are
    ignored. Items are (image, mask noise)."""

    def __init__(self, root: str | Path, transform, noise_fn=None, subset: int | None = None,
                 seed: int = 0, strict: bool = True):
        self.root = pretrain_folder(root)
        files = list_images(self.root)
        self.files = [files[i] for i in deterministic_subset(len(files), subset)]
        self.transform, self.noise_fn, self.seed, self.strict = transform, noise_fn, seed, strict
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def open_image(self, index: int):
        """The image at `index`, or (not strict) the next readable one after it."""
        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            try:
                return open_rgb(path)
            except MaeBenchError as e:
                if self.strict:
                    raise MaeBenchError(f"{e} (set data.strict=False to skip unreadable images)") from None
                warnings.warn(f"skipping unreadable image {path}")
        raise MaeBenchError("no readable image in the dataset")

    def __getitem__(self, index: int):
        img = self.open_image(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, index))
            x = self.transform(img)
            noise = self.noise_fn() if self.noise_fn else torch.empty(0)
        return x, noise


def epoch_loader(dataset: PretrainImages, epoch: int, batch_size: int, rank: int, world_size: int,
                 seed: int, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """This rank's shard of a seeded shuffle for `epoch` (DistributedSampler with set_epoch)."""
    dataset.set_epoch(epoch)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=True, persistent_workers=False, worker_init_fn=worker_init)
