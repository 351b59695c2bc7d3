import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from transfer.synth import (ADE_CLASSES, DOMINANCE, IMAGENET_CLASSES, MIN_AREA, THING_CLASSES,
                              generate, render_scene)

K = len(THING_CLASSES)
SPLITS = (("train", "train2017", "training"), ("val", "val2017", "validation"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate(out, n_train=16, n_val=8, img_size=48, seed=3, progress=False)
    return out, summary


def _hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _imagenet_labels(out: Path, split: str) -> dict:
    return {p.stem: IMAGENET_CLASSES.index(p.parent.name)
            for p in (out / "imagenet" / split).glob("*/*.png")}


def test_summary_and_meta(synth):
    out, summary = synth
    assert summary["num_classes"] == K
    assert summary["counts"]["train"]["images"] == 16 and summary["counts"]["val"]["images"] == 8
    meta = json.loads((out / "synth.json").read_text())
    assert meta["seed"] == 3 and meta["thing_classes"] == THING_CLASSES
    classes = json.loads((out / "ade20k/ADEChallengeData2016/classes.json").read_text())
    assert classes["0"] == "other" and [classes[str(i + 1)] for i in range(len(ADE_CLASSES))] == ADE_CLASSES
    assert IMAGENET_CLASSES == sorted(IMAGENET_CLASSES)


def test_coco_annotations(synth):
    out, _ = synth
    for _, coco_split, _ in SPLITS:
        path = out / "coco/annotations" / f"instances_{coco_split}.json"
        raw = json.loads(path.read_text())
        assert "info" in raw and "licenses" in raw
        coco = COCO(str(path))
        assert sorted(coco.getCatIds()) == list(range(1, K + 1))
        assert [coco.cats[i]["name"] for i in range(1, K + 1)] == THING_CLASSES
        assert coco.getAnnIds()
        for ann in coco.loadAnns(coco.getAnnIds()):
            assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0
            m = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(m)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["area"] == m.sum() >= MIN_AREA


def test_layouts_masks_and_labels(synth):
    out, _ = synth
    ade = out / "ade20k/ADEChallengeData2016"
    for split, coco_split, ade_split in SPLITS:
        coco = COCO(str(out / "coco/annotations" / f"instances_{coco_split}.json"))
        labels = _imagenet_labels(out, split)
        assert len(labels) == len(coco.imgs)
        for img_info in coco.loadImgs(coco.getImgIds()):
            stem = Path(img_info["file_name"]).stem
            cls = labels[stem]
            png = out / "coco" / coco_split / f"{stem}.png"
            inet = out / "imagenet" / split / IMAGENET_CLASSES[cls] / f"{stem}.png"
            assert png.read_bytes() == inet.read_bytes()
            image = np.array(Image.open(png))
            jpg = Image.open(ade / "images" / ade_split / f"{stem}.jpg")
            lab_img = Image.open(ade / "annotations" / ade_split / f"{stem}.png")
            assert image.shape == (48, 48, 3) and image.dtype == np.uint8
            assert jpg.size == (48, 48) and jpg.mode == "RGB" and lab_img.mode == "L"
            label = np.array(lab_img)
            assert label.max() <= len(ADE_CLASSES)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_info["id"]))
            union = np.zeros((K + 1, 48, 48), bool)
            for ann in anns:
                m = coco.annToMask(ann).astype(bool)
                assert not (union.any(0) & m).any()  # visible masks are disjoint
                union[ann["category_id"]] |= m
            for c in range(1, K + 1):
                np.testing.assert_array_equal(union[c], label == c)
            # ImageNet label = category of the largest visible instance
            areas = sorted((a["area"], a["category_id"]) for a in anns)
            assert areas[-1][1] == cls + 1


def test_balanced_classes(synth):
    out, _ = synth
    for split, n in (("train", 16), ("val", 8)):
        counts = Counter(_imagenet_labels(out, split).values())
        assert sorted(counts) == list(range(K)) and sum(counts.values()) == n
        assert max(counts.values()) - min(counts.values()) <= 1


def test_deterministic(tmp_path):
    kw = dict(n_train=8, n_val=8, img_size=32, progress=False)
    generate(tmp_path / "a", seed=1, n_train=16, n_val=8, img_size=32, progress=False)
    generate(tmp_path / "a", seed=1, **kw)  # smaller rerun must leave no stale files
    generate(tmp_path / "b", seed=1, **kw)
    generate(tmp_path / "c", seed=2, **kw)
    ha, hb, hc = (_hashes(tmp_path / d) for d in "abc")
    assert ha == hb
    png = [k for k in ha if k.startswith("coco/train2017")]
    assert png and all(ha[k] != hc.get(k) for k in png)


def test_render_scene_properties():
    seen = Counter()
    for i in range(40):
        img, label, insts, dom = render_scene(np.random.default_rng([9, i]), 32, target=i % K)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and label.dtype == np.uint8
        assert dom == i % K
        areas = sorted(((int(d["mask"].sum()), d["category_id"]) for d in insts), reverse=True)
        assert areas[0][1] == dom + 1
        assert len(areas) == 1 or areas[0][0] >= DOMINANCE * areas[1][0]
        seen.update(np.unique(label).tolist())
    assert 0 in seen
    assert any(len(THING_CLASSES) < v <= len(ADE_CLASSES) for v in seen)
    assert max(seen) <= len(ADE_CLASSES)


@pytest.mark.parametrize("kw", [dict(n_train=K - 1), dict(n_val=0), dict(img_size=8),
                                dict(img_size=32.0), dict(seed=-1), dict(n_train=True)])
def test_bad_args(tmp_path, kw):
    args = dict(n_train=16, n_val=8, img_size=32, seed=0, progress=False) | kw
    with pytest.raises(ValueError):
        generate(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_the_demo_reuses_only_the_scenes_its_suite_asks_for(tmp_path):
    from benchmarks.config import load_recipe
    from benchmarks.demo import scenes_match
    suite = load_recipe("suite", "tiny")
    data = tmp_path / "data"
    assert not scenes_match(data, suite)
    generate(data, n_train=suite.synth.n_train, n_val=suite.synth.n_val, img_size=suite.img_size, seed=suite.seed,
             progress=False)
    assert scenes_match(data, suite)
    meta = json.loads((data / "synth.json").read_text())
    for key, other in (("version", "2"), ("n_train", 600), ("img_size", 48)):  # an older demo's scenes
        (data / "synth.json").write_text(json.dumps({**meta, key: other}))
        assert not scenes_match(data, suite)
    (data / "synth.json").write_text("{oops")
    assert not scenes_match(data, suite)
