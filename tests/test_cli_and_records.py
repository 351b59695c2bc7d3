import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.cli import build_parser, main
from benchmarks.config import load_recipe, resolved, save_recipe
from mae_core.checkpoint import save_checkpoint
from mae_core.weights import encoder_state_dict
from mae_core.visualize import reconstruct
from results.record import ResultError, make_record, read_result, sha256_file, write_result
from tests.conftest import tiny_mae

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys, code):
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("mae-bench: error:")]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command", ["data", "pretrain", "run", "tables", "visualize", "demo", "export", "suite"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"])
    assert e.value.code == 0 and "usage: mae-bench" in capsys.readouterr().out


def test_recipes_inherit_and_override(tmp_path):
    cfg = load_recipe("pretrain", "smoke", ["model.mask_ratio=0.6", "data.crop_scale=(0.3, 1.0)", "model.arch=vit_small_patch16"])
    plain = resolved(cfg)
    assert plain["model"]["mask_ratio"] == 0.6 and plain["model"]["arch"] == "vit_small_patch16"
    assert plain["data"]["crop_scale"] == [0.3, 1.0]
    assert plain["optim"]["betas"] == [0.9, 0.95]  # the schema's default
    assert load_recipe("pretrain", "paper").schedule.accum_iter == 8
    saved = save_recipe(cfg, tmp_path)
    again = resolved(load_recipe("pretrain", str(saved)))
    assert again["model"] == plain["model"] and again["schedule"] == plain["schedule"]


def _ckpt(tmp_path, name="mae.pth", **kw):
    model = tiny_mae(img_size=32, **kw)
    path = tmp_path / name
    save_checkpoint(path, model.state_dict(), epoch=0, config={**model.config, "arch": "vit_tiny_patch16"})
    return model, path


def test_visualize_and_export_commands(synth_root, tmp_path, capsys):
    _, path = _ckpt(tmp_path)
    out = tmp_path / "fig.png"
    assert main(["visualize", "--ckpt", str(path), "--images", str(synth_root / "coco" / "val2017"),
                 "--out", str(out), "--num", "3"]) == 0
    from PIL import Image
    assert Image.open(out).size[1] > 3 * 32
    exported = tmp_path / "enc.safetensors"
    assert main(["export", "--to", "timm", "--ckpt", str(path), "--out", str(exported)]) == 0
    assert exported.stat().st_size > 0


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mae-bench-pwned",))


def test_bad_checkpoints_get_one_line_and_nonzero_exit(synth_root, tmp_path, capsys):
    imgs = str(synth_root / "coco" / "val2017")

    def vis(ckpt):
        return _one_error_line(capsys, main(["visualize", "--ckpt", str(ckpt), "--images", imgs,
                                             "--out", str(tmp_path / "x.png")]))

    assert "not found" in vis(tmp_path / "missing.pth")
    (tmp_path / "corrupt.pth").write_bytes(os.urandom(300))
    assert "cannot read checkpoint" in vis(tmp_path / "corrupt.pth")
    _, good = _ckpt(tmp_path)
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    assert "cannot read checkpoint" in vis(tmp_path / "truncated.pth")
    torch.save({"model": {}, "args": _Evil()}, tmp_path / "evil.pth")
    assert "refusing to load" in vis(tmp_path / "evil.pth") and not Path("/tmp/mae-bench-pwned").exists()
    torch.save({"model": {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}},
               tmp_path / "resnet.pth")
    assert "does not hold a ViT" in vis(tmp_path / "resnet.pth")
    model, _ = _ckpt(tmp_path)
    partial = {k: v for k, v in model.state_dict().items() if k != "blocks.0.mlp.fc1.weight"}
    torch.save({"model": partial}, tmp_path / "partial.pth")
    assert "blocks.0.mlp.fc1.weight" in vis(tmp_path / "partial.pth")
    torch.save({"model": encoder_state_dict(model.state_dict())}, tmp_path / "encoder.pth")
    assert "encoder only" in vis(tmp_path / "encoder.pth")
    code = main(["visualize", "--ckpt", str(good), "--images", str(tmp_path / "no-images"), "--out", str(tmp_path / "y.png")])
    assert "image folder not found" in _one_error_line(capsys, code)


def test_reconstruction_unnormalises_norm_pix_predictions():
    model = tiny_mae(img_size=32, norm_pix_loss=True)

    class Perfect(type(model)):
        def forward(self, imgs, mask_ratio=0.75, noise=None):  # predicts the normalised target exactly
            mask = self.masks_from_noise(noise, mask_ratio)[1]
            return torch.zeros(()), self.target(imgs), mask

    model.__class__ = Perfect
    imgs = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    model.double()
    panels = reconstruct(model, imgs, 0.75, torch.rand(2, 4))
    assert torch.allclose(panels["reconstruction"], imgs, atol=1e-5)
    assert torch.allclose(panels["reconstruction + visible"], imgs, atol=1e-5)
    assert torch.equal(panels["masked"] * panels["mask"], torch.zeros_like(imgs))


def _record(tmp_path, **over):
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(b"weights")
    rec = dict(task="in1k_linear", protocol="linear", arch="vit_tiny_patch16", init={"kind": "mae", "ckpt": str(ckpt), "sha256": sha256_file(ckpt)},
               dataset={"name": "synthetic", "root": "/d", "split": "val", "subset": None},
               metrics={"top1": 51.5, "top5": 90.0}, recipe={"epochs": 1}, started="a", finished="b", wall_s=1.5)
    rec.update(over)
    return make_record(**rec)


def test_result_record_round_trip(tmp_path):
    rec = _record(tmp_path)
    assert rec["init"]["sha256"] == sha256_file(tmp_path / "c.pth")
    assert set(rec["env"]) >= {"torch", "timm", "device", "git_sha"}
    write_result(tmp_path / "run", rec)
    assert read_result(tmp_path / "run") == json.loads(json.dumps(rec))
    assert not [p for p in (tmp_path / "run").iterdir() if p.name != "result.json"]  # no temp files left


def test_result_record_rejects_bad_input(tmp_path):
    with pytest.raises(ResultError, match="init.kind"):
        _record(tmp_path, init={"kind": "imagenet", "ckpt": None, "sha256": None})
    with pytest.raises(ResultError, match="metrics"):
        _record(tmp_path, metrics={"top1": "high"})
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "result.json").write_text("{broken")
    with pytest.raises(ResultError, match="cannot read result file"):
        read_result(tmp_path / "r")
    (tmp_path / "r" / "result.json").write_text(json.dumps({"task": "x"}))
    with pytest.raises(ResultError, match="missing keys"):
        read_result(tmp_path / "r")


def test_results_package_imports_without_torch():
    code = "import sys, results, results.record; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_tables_command_runs_without_torch(tmp_path):
    code = ("import sys; from benchmarks.cli import main; "
            f"assert main(['tables', '--results', {str(tmp_path)!r}, '--out', {str(tmp_path / 't')!r}]) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)
    assert (tmp_path / "t" / "tables.md").exists()


@pytest.mark.parametrize("flags, message", [
    (["--eval-only"], "--eval-only needs --weights"),
    (["--weights", "w.pth"], "--weights is for --eval-only"),
    (["--save-preds"], "--save-preds applies to ade20k_seg, not coco_det"),
])
def test_task_options_are_checked_before_running(synth_root, tmp_path, capsys, flags, message):
    argv = ["run", "--task", "coco_det", "--ckpt", "scratch", "--arch", "vit_tiny_patch16", "--data", str(synth_root),
            "--out", str(tmp_path / "r"), *flags]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
