"""Data that would decode or score wrong is converted, counted or refused: high bit-depth images, files of other
extensions, train/val leakage, COCO annotations that cannot be scored, ADE20K label maps out of range."""
import numpy as np
import pytest
from PIL import Image

from mae_core.errors import MaeBenchError
from mae_core.images import open_rgb


def _gradient16(h=4, w=64):
    return (np.arange(h * w, dtype=np.int64).reshape(h, w) * 1021 % 65536).astype(np.uint16)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_images_scale_to_8_bits(ext, tmp_path):
    a = _gradient16()
    Image.fromarray(a).save(tmp_path / f"g.{ext}")
    assert Image.open(tmp_path / f"g.{ext}").mode == "I;16"
    got = np.asarray(open_rgb(tmp_path / f"g.{ext}"))
    want = np.floor(a.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert got.shape == (*a.shape, 3) and all(np.array_equal(got[..., c], want) for c in range(3))
    assert len(np.unique(got)) > 100  # not the flat image PIL's own convert gives


def test_16_bit_data_equals_its_8_bit_twin_through_the_classification_transform(tmp_path):
    from transfer.classification.data import eval_transform
    k = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    Image.fromarray(k).save(tmp_path / "a8.png")
    Image.fromarray(k.astype(np.uint16) * 257).save(tmp_path / "a16.png")  # 257 k: exactly k in 8 bits
    t = eval_transform(32)
    assert np.array_equal(t(open_rgb(tmp_path / "a8.png")).numpy(), t(open_rgb(tmp_path / "a16.png")).numpy())


def test_float_images_in_0_1_scale_to_8_bits_and_others_are_refused(tmp_path):
    f = (np.arange(256, dtype=np.float32).reshape(16, 16) / 255)
    Image.fromarray(f).save(tmp_path / "f.tif")
    got = np.asarray(open_rgb(tmp_path / "f.tif"))[..., 0]
    assert np.array_equal(got, np.arange(256).reshape(16, 16))
    Image.fromarray(f * 2).save(tmp_path / "big.tif")
    with pytest.raises(MaeBenchError, match=r"big.tif: a float image with values in \[0, 2\], not \[0, 1\]"):
        open_rgb(tmp_path / "big.tif")
    Image.fromarray(np.full((4, 4), 70000, dtype=np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(MaeBenchError, match="not 16-bit"):
        open_rgb(tmp_path / "i32.tif")


def _imagenet_copy(synth_root, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synth_root / "imagenet", root / "imagenet")
    return root / "imagenet"


def _knn(data, out):
    from benchmarks.cli import main
    return main(["run", "--task", "knn", "--recipe", "smoke", "--ckpt", "scratch", "--arch", "vit_tiny_patch16",
                 "--data", str(data), "--out", str(out), "--set", "model.img_size=32", "--set", "schedule.batch_size=8",
                 "--set", "runtime.device='cpu'", "--set", "knn.k=5"])


def test_validation_copies_of_training_images_are_counted_and_recorded(synth_root, tmp_path, capsys):
    import hashlib
    import shutil
    from results.record import read_result
    root = _imagenet_copy(synth_root, tmp_path)
    train = sorted((root / "train").rglob("*.png"))
    for i, src in enumerate(train[:3]):  # three training images copied into val under new names
        shutil.copy(src, root / "val" / src.parent.name / f"copy{i}.png")
    (root / "val" / train[5].parent.name / "link.png").symlink_to(train[5])  # and one linked
    out = tmp_path / "run"
    assert _knn(root, out) == 0
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in train}
    want = sum(hashlib.sha256(p.read_bytes()).hexdigest() in digests for p in (root / "val").rglob("*.png"))
    ds = read_result(out)["dataset"]
    assert want == 4 and ds["val_duplicates_of_train"] == want
    assert f"warning: {want} of 12 validation images are byte-identical to training images" in capsys.readouterr().err
    assert (root / ".mae-bench-cache" / "sha256.json").is_file()  # next to the data: the next run hashes nothing


def test_file_hashes_are_cached_by_size_and_mtime(tmp_path):
    import os
    from mae_core.file_cache import FileCache
    from transfer.leakage import find_duplicates
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 10)  # the same size, other content
    cache = FileCache(tmp_path / "cache", "sha256")
    (tmp_path / "cache").mkdir()
    assert find_duplicates([a], [b], cache) == []
    cache.save()
    cache = FileCache(tmp_path / "cache", "sha256")
    assert set(cache.get(a)) == {"head"}  # sizes matched, the first 4 KiB did not: the rest was never read
    for p in (a, b):  # cached hashes are trusted while size and mtime hold: no file is read again
        cache.put(p, {"head": "h", "sha256": "s"})
    assert find_duplicates([a], [b], cache) == [(str(b), str(a))]
    os.utime(b, ns=(1, 1))  # touched: read again
    assert find_duplicates([a], [b], cache) == []
    head = tmp_path / "head.bin"  # the same first 4 KiB and size, another end: not a duplicate
    long_a = tmp_path / "long.bin"
    long_a.write_bytes(b"z" * 5000)
    head.write_bytes(b"z" * 4999 + b"!")
    twin = tmp_path / "twin.bin"
    twin.write_bytes(long_a.read_bytes())
    assert find_duplicates([long_a, a], [head, twin], cache) == [(str(twin), str(long_a))]


def test_a_validation_split_linked_to_training_is_refused(synth_root, tmp_path, capsys):
    import shutil
    root = _imagenet_copy(synth_root, tmp_path)
    shutil.rmtree(root / "val")
    (root / "val").symlink_to(root / "train")
    out = tmp_path / "run"
    assert _knn(root, out) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mae-bench: error:")]
    assert len(lines) == 1 and "is the training split" in lines[0] and "(a link to it)" in lines[0]
    assert "Traceback" not in err and not (out / "result.json").exists()


def test_files_of_other_extensions_are_counted_and_reported_once(synth_root, tmp_path, capsys):
    from results.record import read_result
    root = _imagenet_copy(synth_root, tmp_path)
    for split in ("train", "val"):
        cls = sorted((root / split).iterdir())[0]
        src = sorted(cls.glob("*.png"))[0]
        (cls / "photo.heic").write_bytes(src.read_bytes())  # a real image under an extension not read
        (cls / ".DS_Store").write_bytes(b"")  # hidden files are not counted
    out = tmp_path / "run"
    assert _knn(root, out) == 0
    ds = read_result(out)["dataset"]
    assert ds["ignored_files"] == {"train": 1, "val": 1} and ds["train_images"] == 24 and ds["val_images"] == 8
    err = capsys.readouterr().err
    assert err.count("files with other extensions ignored") == 1 and "warning: 2 files" in err


def test_coco_annotations_that_cannot_be_scored_are_counted_warned_and_recorded(synth_root, tmp_path, capsys):
    import json
    import shutil
    from mae_core.distributed import DistInfo
    from transfer.detection.data import CocoInstances
    from transfer.detection.train import _split_facts
    root = tmp_path / "coco"
    shutil.copytree(synth_root / "coco", root)
    path = root / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    extra = dict(data["annotations"][0], id=10_000, image_id=999_999)  # names no image
    data["annotations"].append(extra)
    for a in data["annotations"][:2]:  # two boxes right of their 32 px images
        a["bbox"] = [40.0, 1.0, 5.0, 5.0]
    path.write_text(json.dumps(data))
    train = CocoInstances(root, "train2017", train=True, img_size=32)
    first = root / "train2017" / train.coco.imgs[train.ids[0]]["file_name"]
    shutil.copy(root / "val2017" / data["images"][3]["file_name"], first)  # a validation image in train
    val = CocoInstances(root, "val2017", train=False, img_size=32)
    images = {im["id"]: im for im in data["images"]}
    outside = sum(1 for a in data["annotations"] if a["image_id"] in images
                  and a["bbox"][0] >= images[a["image_id"]]["width"])
    assert val.issues == {"annotations_without_image": 1, "boxes_outside_image": outside} and outside == 2
    facts = _split_facts(train, val, root, tmp_path / "run", DistInfo())
    assert facts["annotation_issues"]["val"] == val.issues
    assert facts["annotation_issues"]["train"] == {"annotations_without_image": 0, "boxes_outside_image": 0}
    err = capsys.readouterr().err
    assert "warning: COCO val2017: 1 annotations without image, 2 boxes outside image" in err
    assert facts["val_duplicates_of_train"] == 1 and "1 of 8 validation images are byte-identical" in err


def test_label_map_ids_come_from_a_histogram_cached_by_size_and_mtime(tmp_path):
    from mae_core.file_cache import FileCache
    from transfer.segmentation.data import label_ids
    a = np.zeros((6, 6), np.uint8)
    a[0, :3] = 7
    a[5, 5] = 255
    Image.fromarray(a).save(tmp_path / "l.png")
    (tmp_path / "c").mkdir()
    cache = FileCache(tmp_path / "c", "label_ids")
    want = [[int(v), int(n)] for v, n in zip(*np.unique(a, return_counts=True))]
    assert label_ids(tmp_path / "l.png", cache) == want == [[0, 32], [7, 3], [255, 1]]
    cache.save()
    cache = FileCache(tmp_path / "c", "label_ids")
    cache.put(tmp_path / "l.png", [[9, 1]])  # a cached entry is what the next run reads, not the file
    assert label_ids(tmp_path / "l.png", cache) == [[9, 1]]
    Image.fromarray((a.astype(np.uint16) * 100)).save(tmp_path / "l.png")  # rewritten as 16 bits: read again
    assert label_ids(tmp_path / "l.png", cache) == [[0, 32], [700, 3], [25500, 1]]


def test_pretraining_counts_files_of_other_extensions_in_one_warning(tmp_path, capsys):
    from mae_core.images import list_images
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "a.heic").write_bytes((tmp_path / "0.png").read_bytes())
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".DS_Store").write_bytes(b"")
    assert len(list_images(tmp_path)) == 3
    err = capsys.readouterr().err
    assert err.count("warning: 2 files with other extensions ignored under") == 1 and "a.heic" in err
