"""Pretraining's k-NN monitor: its numbers are the knn task's on the checkpoint of that epoch, it runs every N
epochs and the last, it leaves the training bitwise as without it (and off, pretraining is main's run_pretrain),
its history survives a resume, and a bad setting is one error line before any training."""
import json
import shutil

import pytest
import torch

from benchmarks.cli import main
from benchmarks.config import load_recipe, resolved
from mae_core.checkpoint import read_checkpoint
from mae_core.pretrain import run_pretrain
from results.record import read_result
from tests.conftest import TINY_PRETRAIN, tiny_pretrain_args
from transfer.synth import generate

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A labelled split of its own with 48 validation scenes: a top-1 in steps of 2.1 points, so that two
    computations agreeing on it (and on top-5) at two epochs is not chance."""
    root = tmp_path_factory.mktemp("knn_monitor_data")
    generate(root, n_train=40, n_val=48, img_size=32, seed=1, progress=False)
    return root


def _epochs(run):
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("type") == "epoch"]


def _same_weights(a, b):
    a, b = read_checkpoint(a)["model"], read_checkpoint(b)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_monitor_scores_what_the_knn_task_scores_and_leaves_training_alone(synth_root, labelled, tmp_path):
    data = synth_root / "imagenet" / "train"
    off, on = tmp_path / "off", tmp_path / "on"
    assert main(tiny_pretrain_args(data, off, epochs=3)) == 0
    assert main(tiny_pretrain_args(data, on, epochs=3, extra=[
        "monitor.knn_every=2", "monitor.knn_global_pool=avg", f"monitor.knn_data={labelled}",
        "runtime.keep_last=3"])) == 0
    off_log, on_log = _epochs(off), _epochs(on)
    # every 2nd epoch and the last, nothing when off
    assert [r["epoch"] for r in on_log if "knn_top1" in r] == [1, 2]
    assert not any(k.startswith("knn") for r in off_log for k in r)
    # the training is untouched: the same losses and weights, bitwise
    assert [r["loss"] for r in on_log] == [r["loss"] for r in off_log]
    assert _same_weights(off / "checkpoint-last.pth", on / "checkpoint-last.pth")
    # off, the task's runner is main's run_pretrain with no monitor section at all
    cfg = resolved(load_recipe("pretrain", "smoke", [*TINY_PRETRAIN, "schedule.epochs=3"]))
    del cfg["monitor"]
    cfg["task"] = "pretrain"
    direct = tmp_path / "direct"
    run_pretrain(cfg, init="scratch", arch=None, data=str(data), out=str(direct))
    assert [r["loss"] for r in _epochs(direct)] == [r["loss"] for r in off_log]
    assert _same_weights(off / "checkpoint-last.pth", direct / "checkpoint-last.pth")
    # an independent computation: the knn task on the checkpoint of each monitored epoch
    for epoch in (1, 2):
        out = tmp_path / f"knn{epoch}"
        assert main(["run", "--task", "knn", "--ckpt", str(on / f"checkpoint-{epoch}.pth"), "--data", str(labelled),
                     "--out", str(out), "--recipe", "smoke", "--set", "model.img_size=32", "--set",
                     "model.global_pool=avg", "--set", "schedule.batch_size=8", "--set", "runtime.device=cpu"]) == 0
        metrics = read_result(out)["metrics"]
        assert (on_log[epoch]["knn_top1"], on_log[epoch]["knn_top5"]) == (metrics["top1"], metrics["top5"])
    # drawn beside the loss, and the last numbers in the run's record
    assert (on / "monitor.png").read_bytes()[:8] == PNG and not (off / "monitor.png").exists()
    rec = read_result(on)
    assert rec["metrics"] == {"loss": on_log[-1]["loss"], "knn_top1": on_log[-1]["knn_top1"],
                              "knn_top5": on_log[-1]["knn_top5"]}
    assert rec["dataset"]["knn_monitor"]["train_images"] == 40 and rec["dataset"]["knn_monitor"]["val_images"] == 48
    assert read_result(off)["metrics"] == {"loss": off_log[-1]["loss"]}


def test_monitor_history_survives_a_resume(synth_root, tmp_path):
    # default data: the root above the train/ that pretraining reads (the synthetic imagenet/: 24 train, 8 val)
    data = synth_root / "imagenet" / "train"
    extra = ["monitor.knn_every=1", "monitor.knn_k=5"]
    full = tmp_path / "full"
    assert main(tiny_pretrain_args(data, full, epochs=2, extra=extra)) == 0
    # stopped after epoch 0, then resumed: epoch 0's monitor record is kept, epoch 1 is measured again
    part = tmp_path / "part"
    shutil.copytree(full, part)
    (part / "checkpoint-last.pth").unlink()
    (part / "checkpoint-0.pth").rename(part / "checkpoint-last.pth")
    (part / "monitor.png").unlink()
    assert main([*tiny_pretrain_args(data, part, epochs=2, extra=extra), "--resume", "auto"]) == 0
    keys = ("epoch", "loss", "knn_top1", "knn_top5")
    want = [{k: r[k] for k in keys} for r in _epochs(full)]
    assert [{k: r[k] for k in keys} for r in _epochs(part)] == want and len(want) == 2
    assert (part / "monitor.png").read_bytes()[:8] == PNG
    assert read_result(part)["metrics"]["knn_top1"] == want[-1]["knn_top1"]
    # a resumed finished run measures nothing again, logs nothing, and records the logged numbers
    log = (full / "log.jsonl").read_text()
    assert main([*tiny_pretrain_args(data, full, epochs=2, extra=extra), "--resume", "auto"]) == 0
    assert [r for r in (full / "log.jsonl").read_text().splitlines() if '"type": "epoch"' in r] == \
        [r for r in log.splitlines() if '"type": "epoch"' in r]
    assert read_result(full)["metrics"]["knn_top5"] == want[-1]["knn_top5"]


def test_a_bad_monitor_setting_is_one_line_before_any_training(synth_root, tmp_path, capsys):
    data = synth_root / "imagenet" / "train"

    def refused(name, *extra, data=data):
        out = tmp_path / name
        code = main(tiny_pretrain_args(data, out, epochs=1, extra=extra))
        err = capsys.readouterr().err
        errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("mae-bench: error:")]
        assert code != 0 and len(errors) == 1 and "Traceback" not in err, err
        assert not out.exists() or not any(out.glob("checkpoint-*")) and not (out / "log.jsonl").exists()
        return errors[0]

    assert "monitor.knn_every=-1" in refused("a", "monitor.knn_every=-1")
    assert "monitor.knn_global_pool='max'" in refused("b", "monitor.knn_every=1", "monitor.knn_global_pool=max")
    assert "monitor.knn_temperature=0" in refused("c", "monitor.knn_every=1", "monitor.knn_temperature=0")
    assert "monitor.knn_val_subset=0" in refused("d", "monitor.knn_every=1", "monitor.knn_val_subset=0")
    assert "monitor.knn_k=25 is more than the monitor's 24 training images" in refused(
        "e", "monitor.knn_every=1", "monitor.knn_k=25")
    assert "is not a folder" in refused("f", "monitor.knn_every=1", f"monitor.knn_data={tmp_path / 'nope'}")
    plain = tmp_path / "plain"  # images without labels: nothing for a k-NN to score
    plain.mkdir()
    for i, f in enumerate(sorted(data.rglob("*.png"))[:8]):
        (plain / f"{i}.png").write_bytes(f.read_bytes())
    assert "needs labelled images" in refused("g", "monitor.knn_every=1", data=plain)
