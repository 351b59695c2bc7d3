"""`python -m tools.data_speed`: the decoders agree with the pretraining transform, the command's output and errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from tools import data_speed
from tools.data_speed import main
from tools.host import cpu_model, load_warning
from mae_core.data import pretrain_transform
from mae_core.images import open_rgb


@pytest.fixture(scope="module")
def funcs():
    return data_speed.pipelines(224, [0.2, 1.0])


def _px(x):  # normalised tensor -> 0-255 pixel values
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    return (x * std + mean) * 255


def test_synthetic_jpegs_are_real_size_jpegs(tmp_path):
    paths = data_speed.synth_jpegs(tmp_path, 3, size=(500, 375), seed=1)
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (500, 375)
    assert np.asarray(open_rgb(paths[0])).std() > 20  # textured, not flat


def test_pil_path_is_the_pretraining_transform(tmp_path, funcs):
    path = data_speed.synth_jpegs(tmp_path, 1)[0]
    torch.manual_seed(7)
    expected = pretrain_transform("rrc", 224, (0.2, 1.0))(open_rgb(path))
    assert torch.equal(funcs["pil"](path, 7), expected)


def test_draft_equals_full_decode_when_no_smaller_scale_fits(tmp_path, funcs):
    # 500x375: a crop never has both sides >= 448, so draft mode decodes at full size: identical output
    paths = data_speed.synth_jpegs(tmp_path, 4)
    for k, p in enumerate(paths):
        assert torch.equal(funcs["pil_draft"](p, k), funcs["pil"](p, k))


def test_draft_on_large_images_is_close_and_keeps_the_crop(tmp_path, funcs):
    paths = data_speed.synth_jpegs(tmp_path, 3, size=(1600, 1200))
    diffs = []
    for k, p in enumerate(paths):
        a, b = _px(funcs["pil_draft"](p, k)), _px(funcs["pil"](p, k))
        diffs.append((a - b).abs().mean().item())
        # the same crop and flip: far closer than another sample's crop of the same image
        assert diffs[-1] < 0.5 * (_px(funcs["pil"](p, k + 100)) - b).abs().mean().item()
    assert max(diffs) < 6


def test_torchvision_decode_is_close_to_pil(tmp_path, funcs):
    for k, p in enumerate(data_speed.synth_jpegs(tmp_path, 3)):
        assert (_px(funcs["tv"](p, k)) - _px(funcs["pil"](p, k))).abs().mean().item() < 1.0


def test_bench_data_smoke_output(capsys):
    assert main(["--recipe", "smoke"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| decoder")]
    assert [r.split(" | ")[0].strip("| ") for r in rows] == ["pil", "pil_draft", "tv"]
    for r in rows:
        assert float(r.split(" | ")[1]) > 0
    cpu = cpu_model()
    assert f"family {cpu['family']}" in out if cpu["family"] is not None else cpu["name"] in out
    assert "load average (1 min) before, then after each repeat:" in out
    assert "target >= 400 img/s per core" in out and ("met" in out.splitlines()[-1])


def test_bench_data_writes_its_section(tmp_path, capsys):
    data = tmp_path / "jpegs"
    data.mkdir()
    data_speed.synth_jpegs(data, 2, size=(64, 48))
    out = tmp_path / "R.md"
    assert main(["--recipe", "smoke", "--data", str(data), "--set", f"out={out}",
                 "--set", "decoders=['tv']"]) == 0
    text = out.read_text()
    assert "<!-- bench:data/jpegs/224px -->" in text and "| tv |" in text and "| pil |" in text


def _folder(tmp_path, files):
    d = tmp_path / "d"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize("files, message", [
    (None, "is not a folder"),
    ({}, "no JPEG files"),
    ({"a.png": b"png"}, "no JPEG files"),
    ({"x.jpg": b"not a jpeg"}, "cannot decode"),
])
def test_bad_data_is_one_line_and_non_zero(tmp_path, capsys, files, message):
    data = tmp_path / "missing" if files is None else _folder(tmp_path, files)
    assert main(["--recipe", "smoke", "--data", str(data)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in captured.err


@pytest.mark.parametrize("sets, message", [
    (["decoders=['magic']"], "decoders"),
    (["passes=0"], "passes"),
    (["image_size=[8, 8]"], "image_size"),
])
def test_bad_settings_are_refused(capsys, sets, message):
    argv = ["--recipe", "smoke"] + [a for s in sets for a in ("--set", s)]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_speed_tool_runs_as_a_module_with_one_line_errors(capsys):
    from tools.speed import main as speed_main
    assert speed_main(["--recipe", "nosuch"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no recipe 'nosuch' for bench; available: base, smoke" in err[0]


def test_cpu_model_and_load_warning():
    info = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14\n"
    assert cpu_model(info) == {"name": "AMD EPYC 9R14", "vendor": "AuthenticAMD", "family": 25, "model": 17}
    assert load_warning([0.3, 2.1, 2.4], threads=2) is None  # only our own two threads
    assert "under load" in load_warning([1.6, 2.2], threads=2)  # someone was busy before we started
    assert "under load" in load_warning([0.2, 2.0, 3.8], threads=2)  # ...or joined during the run
    assert load_warning([None], threads=2) is None
