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
