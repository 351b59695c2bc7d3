import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mae_core.errors import MaeBenchError
from mae_core.images import open_rgb
from transfer.classification.data import (ImageFolderDataset, check_same_classes, drop_bad, eval_transform,
                                          subset_samples, train_transform)

FINETUNE_CFG = {"auto_augment": "rand-m9-mstd0.5-inc1", "color_jitter": None, "reprob": 0.25}


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """Synthetic ImageNet layout: 8 classes, 3 train and 1 val image each, 32 px."""
    from transfer.synth import generate
    root = tmp_path_factory.mktemp("synth_cls")
    generate(root, n_train=24, n_val=8, img_size=32, seed=0, progress=False)
    return root / "imagenet"


def dataset(root, split="train", **kw):
    return ImageFolderDataset(root, split, eval_transform(32), img_size=32, **kw)


def test_classes_and_labels(imagenet):
    ds = dataset(imagenet)
    folders = sorted(p.name for p in (imagenet / "train").iterdir() if p.is_dir())
    assert ds.classes == folders and ds.num_classes == 8 == len(ds.class_to_idx)
    assert len(ds) == 24
    for path, label in ds.samples:
        assert Path(path).parent.name == ds.classes[label]
    x, label, ok = ds[5]
    assert x.shape == (3, 32, 32) and ok and label == ds.samples[5][1]
    check_same_classes(ds, dataset(imagenet, "val"))


def test_subset_total_and_per_class(imagenet):
    total = dataset(imagenet, subset=10)
    assert len(total) == 10
    counts = Counter(label for _, label in total.samples)
    assert len(counts) == 8 and max(counts.values()) - min(counts.values()) <= 1
    assert total.samples == dataset(imagenet, subset=10).samples  # the same files every run
    bigger = dataset(imagenet, subset=20)
    assert set(total.samples) <= set(bigger.samples)

    per_class = dataset(imagenet, subset=2, subset_mode="per_class")
    assert len(per_class) == 16 and set(Counter(lb for _, lb in per_class.samples).values()) == {2}
    assert per_class.samples == dataset(imagenet, subset=2, subset_mode="per_class").samples
    assert len(dataset(imagenet, subset=1000)) == 24


def test_subset_uneven_classes():
    files = [["a0"], [f"b{i}" for i in range(5)], [f"c{i}" for i in range(5)]]
    picked = subset_samples(files, 7)
    assert [len(p) for p in picked] == [1, 3, 3]
    assert sum(len(p) for p in subset_samples(files, 5)) == 5
    assert [len(p) for p in subset_samples(files, 4, "per_class")] == [1, 4, 4]
    with pytest.raises(MaeBenchError, match="subset_mode"):
        subset_samples(files, 4, "per_image")
    with pytest.raises(MaeBenchError, match="positive"):
        subset_samples(files, -3)


def test_corrupt_image(imagenet, tmp_path):
    root = tmp_path / "imagenet"
    shutil.copytree(imagenet, root)
    ds = dataset(root)
    bad = next(i for i, (path, _) in enumerate(ds.samples) if Path(path).suffix == ".png")
    Path(ds.samples[bad][0]).write_bytes(b"this is not a png")

    x, label, ok = ds[bad]
    assert not ok and label == ds.samples[bad][1] and torch.equal(x, torch.zeros(3, 32, 32))
    lazy = ImageFolderDataset(root, "train", eval_transform(32))  # no img_size: shape from the transform
    assert lazy[bad][0].shape == (3, 32, 32) and lazy[bad][2] is False

    images, labels, n_bad = drop_bad(next(iter(DataLoader(ds, batch_size=len(ds)))))
    assert n_bad == 1 and images.shape == (23, 3, 32, 32) and len(labels) == 23

    with pytest.raises(MaeBenchError, match="strict"):
        dataset(root, strict=True)[bad]


def test_drop_bad_keeps_a_clean_batch():
    batch = (torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2]), torch.tensor([True, True, True]))
    images, labels, n_bad = drop_bad(batch)
    assert n_bad == 0 and images is batch[0] and labels is batch[1]


def test_missing_split_and_layout_errors(imagenet, tmp_path):
    with pytest.raises(MaeBenchError, match="dataset split not found"):
        dataset(imagenet, "test")
    (tmp_path / "flat" / "val").mkdir(parents=True)
    with pytest.raises(MaeBenchError, match="no class folders"):
        dataset(tmp_path / "flat", "val")
    (tmp_path / "flat" / "val" / "n00_empty").mkdir()
    with pytest.raises(MaeBenchError, match="no images in 1 class folder"):
        dataset(tmp_path / "flat", "val")


def test_check_same_classes(imagenet, tmp_path):
    root = tmp_path / "imagenet"
    shutil.copytree(imagenet / "val", root / "val")
    extra = root / "val" / "n99_extra"
    extra.mkdir()
    shutil.copy(next((root / "val").glob("*/*.png")), extra / "x.png")
    with pytest.raises(MaeBenchError, match="n99_extra"):
        check_same_classes(dataset(imagenet), dataset(root, "val"))


@pytest.mark.parametrize("kind, cfg", [("linear", {}), ("finetune", FINETUNE_CFG),
                                       ("finetune", {**FINETUNE_CFG, "auto_augment": None}), ("none", {})])
def test_train_transform_shapes(imagenet, kind, cfg):
    img = open_rgb(next((imagenet / "train").glob("*/*.png")))
    for size in (32, 64):
        x = train_transform(kind, size, cfg)(img)
        assert x.shape == (3, size, size) and x.dtype == torch.float32


def test_eval_transform_deterministic(imagenet):
    img = open_rgb(next((imagenet / "val").glob("*/*.png")))
    t = eval_transform(32)
    a, b = t(img), t(img)
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    assert torch.equal(train_transform("none", 32, {"crop_pct": 0.875})(img), a)
    with pytest.raises(MaeBenchError, match="unknown augmentation"):
        train_transform("mixup", 32, {})
