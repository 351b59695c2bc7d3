"""One data-root rule for every layout: the synthetic set's subfolder, the dataset folder itself, the name."""
import pytest

from mae_core.errors import MaeBenchError
from transfer.classification.data import resolve_root as imagenet_root
from transfer.detection.data import resolve_root as coco_root
from transfer.segmentation.data import resolve_root as ade20k_root


def test_layouts(tmp_path):
    synth, real = tmp_path / "synth", tmp_path / "real"
    for d in ("imagenet/train", "coco/annotations", "ade20k/ADEChallengeData2016/images",
              "ade20k/ADEChallengeData2016/annotations"):
        (synth / d).mkdir(parents=True)
        (real / d).mkdir(parents=True)
    (synth / "synth.json").write_text("{}")
    assert imagenet_root(synth) == (synth / "imagenet", "synthetic-imagenet")
    assert coco_root(synth) == (synth / "coco", "synthetic-coco")
    assert ade20k_root(synth) == (synth / "ade20k" / "ADEChallengeData2016", "synthetic-ade20k")
    assert imagenet_root(real / "imagenet") == (real / "imagenet", "imagenet")
    assert coco_root(real / "coco") == (real / "coco", "coco")
    assert ade20k_root(real / "ade20k") == (real / "ade20k" / "ADEChallengeData2016", "ade20k")
    assert imagenet_root(tmp_path / "none") == (tmp_path / "none", "imagenet")  # the ImageFolder names what is missing
    with pytest.raises(MaeBenchError, match="is not a COCO root"):
        coco_root(tmp_path)
    with pytest.raises(MaeBenchError, match="no ADE20K layout under"):
        ade20k_root(tmp_path)
