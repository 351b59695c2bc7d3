"""tools/device_check.py runs on CPU in tiny mode (every part, one step each) and writes its RESULTS section;
the GPU report's comparisons with the references are computed as stated."""
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dc():
    spec = importlib.util.spec_from_file_location("device_check", REPO / "tools" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_mode_runs_every_part_and_replaces_its_own_section(dc, tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Measured results\n\nearlier notes, kept\n")
    assert dc.main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    key = re.search(r"<!-- device-check: (.+?) -->", text).group(1)
    assert "earlier notes, kept" in text and "FAILED" not in text
    for name, _, _ in dc.PARTS:  # every part has a row
        assert f"| {name}" in text, name
    assert "gloo, world 1, all_reduce of 4 MiB correct" in text
    bound = r"loader alone [\d.]+ img/s with 1 workers, compute alone [\d.]+ img/s: \*\*(loading|compute)-bound"
    assert re.search(bound, text)
    assert "GFLOP/step (FlopCounterMode, fwd + bwd)" in text
    # a second write of the same device replaces its section, atomically; other sections stay
    other = dc.MARK.format("Other GPU") + "\nother\n" + dc.END.format("Other GPU") + "\n"
    out.write_text(text + "\n" + other)
    dc.write_section(out, key, dc.MARK.format(key) + "\nnew\n" + dc.END.format(key) + "\n")
    again = out.read_text()
    assert again.count(dc.MARK.format(key)) == 1 and "\nnew\n" in again and "| pretrain ViT-B" not in again
    assert "\nother\n" in again and "earlier notes, kept" in again
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


def test_gpu_report_states_mfu_and_reference_ratios(dc):
    step = {"step_s": 0.5, "img_s": 128.0, "peak_gb": 20.0}
    results = {
        "pretrain ViT-L": {"arch": "vit_large_patch16", "batch": 64, "amp": "bf16", "compile": False, "img_s": 400.0,
                           "step_s": 0.16, "peak_gb": 30.0, "flops": 80e12, "tflops": 500.0, "mfu": 500 / 989},
        "ViTDet-B 1024 px": {"arch": "vit_base_patch16", "batch": 2, "train": step, "eval": {**step, "step_s": 0.05},
                             "train_1": {**step, "step_s": 0.2, "peak_gb": 8.0}},
        "fine-tune": {"error": "RuntimeError: boom"},
    }
    env = {"when": "now", "torch": "x", "cuda": "y", "host": "h", "tiny": False, "wall_s": 1.0, "peak_tflops": 989.0}
    text = dc.report("NVIDIA H200", env, results)
    assert "MFU 50.6 %" in text and "FAILED: RuntimeError: boom" in text
    theirs = 800 * 1281167 / (42 * 3600) / 64  # img/s per V100 of the official ViT-L run
    assert f"vs {theirs:.0f} img/s per V100" in text and f"x{400 / theirs:.1f} per GPU" in text
    assert f"x{0.2 / 0.314:.2f}" in text and f"x{8.0 / 10.9:.2f}" in text and f"x{0.05 / 0.079:.2f}" in text
    assert dc.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and dc.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
