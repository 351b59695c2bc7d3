"""tools/bitwise_compare.py: equal folders pass, a changed weight, metric or a missing file is named."""
import json
import shutil

import torch

from mae_core.checkpoint import save_checkpoint
from tools.bitwise_compare import compare


def _run(root, w=1.0, top1=50.0):
    (root / "runs" / "knn").mkdir(parents=True)
    (root / "runs" / "knn" / "result.json").write_text(json.dumps({"metrics": {"top1": top1}}))
    save_checkpoint(root / "pretrain" / "checkpoint-last.pth", {"w": torch.full((2,), w)})


def test_equal_folders_pass_and_each_difference_is_named(tmp_path):
    _run(tmp_path / "a")
    _run(tmp_path / "b")
    assert compare(tmp_path / "a", tmp_path / "b") == (2, [])
    _run(tmp_path / "c", w=1.0 + 1e-7)
    _run(tmp_path / "d", top1=50.000001)
    assert compare(tmp_path / "a", tmp_path / "c")[1] == ["weights differ: pretrain/checkpoint-last.pth"]
    assert compare(tmp_path / "a", tmp_path / "d")[1] == ["metrics differ: runs/knn"]
    shutil.rmtree(tmp_path / "b" / "pretrain")
    assert compare(tmp_path / "a", tmp_path / "b")[1] == [f"missing {tmp_path / 'b' / 'pretrain' / 'checkpoint-last.pth'}"]
