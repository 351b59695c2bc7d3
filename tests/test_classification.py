
import numpy as np
import pytest
import torch
from timm.data import Mixup

from benchmarks.cli import main
from mae_core.checkpoint import read_checkpoint
from results.record import read_result, sha256_file
from transfer.classification.evaluate import evaluate_classifier, topk_correct
from transfer.classification.heads import set_trainable
from transfer.encoder import build_vit
from mae_core.distributed import DistInfo

TINY = ["model.img_size=32", "schedule.batch_size=8", "schedule.warmup_epochs=1", "data.num_workers=0",
        "runtime.amp=none", "runtime.device=cpu", "runtime.log_every=1", "runtime.save_every=1",
        "runtime.keep_last=2", "runtime.cpu_linear=onednn"]  # fixed: tests compare independent runs bitwise


def run_args(task, ckpt, data, out, epochs=2, extra=(), arch=None):
    sets = [a for s in [*TINY, f"schedule.epochs={epochs}", *extra] for a in ("--set", s)]
    argv = ["run", "--task", task, "--ckpt", str(ckpt), "--data", str(data), "--out", str(out), "--recipe", "smoke", *sets]
    return argv + (["--arch", arch] if arch else [])


def _weights(path):
    return read_checkpoint(path)["model"]


def test_linear_probe_changes_only_the_head(synth_root, mae_ckpt, tmp_path):
    out = tmp_path / "lin"
    assert main(run_args("in1k_linear", mae_ckpt, synth_root, out, extra=["runtime.cache_features=False",
                                                                       "data.augment=linear"])) == 0
    before, after = _weights(mae_ckpt), _weights(out / "checkpoint-last.pth")
    for k, v in after.items():
        if k.startswith("head."):
            continue
        assert torch.equal(v, before[k]), k
    assert not torch.equal(after["head.1.weight"], torch.zeros_like(after["head.1.weight"]))
    rec = read_result(out)
    assert rec["task"] == "in1k_linear" and rec["protocol"] == "linear" and rec["init"]["kind"] == "mae"
    assert rec["init"]["sha256"] == sha256_file(mae_ckpt) and set(rec["metrics"]) >= {"top1", "top5"}
    assert 0 <= rec["metrics"]["top1"] <= rec["metrics"]["top5"] <= 100
    assert "pretrain" not in rec["init"]  # a bare state dict records no pretraining settings


def test_record_carries_the_pretraining_settings(synth_root, tmp_path):
    from tests.conftest import tiny_pretrain_args
    assert main(tiny_pretrain_args(synth_root / "imagenet" / "train", tmp_path / "pre", epochs=1,
                                   extra=["model.mask_ratio=0.5"])) == 0
    out = tmp_path / "lin"
    assert main(run_args("in1k_linear", tmp_path / "pre" / "checkpoint-last.pth", synth_root, out, epochs=1)) == 0
    pre = read_result(out)["init"]["pretrain"]
    assert pre["model"]["mask_ratio"] == 0.5 and pre["model"]["decoder_depth"] == 1 and pre["epochs_done"] == 1


def test_feature_caching_gives_the_same_numbers(synth_root, mae_ckpt, tmp_path):
    common = ["data.augment=none"]
    assert main(run_args("in1k_linear", mae_ckpt, synth_root, tmp_path / "c", extra=[*common, "runtime.cache_features=True"])) == 0
    assert main(run_args("in1k_linear", mae_ckpt, synth_root, tmp_path / "u", extra=[*common, "runtime.cache_features=False"])) == 0
    a, b = read_result(tmp_path / "c")["metrics"], read_result(tmp_path / "u")["metrics"]
    assert a["top1"] == pytest.approx(b["top1"]) and a["top5"] == pytest.approx(b["top5"])
    wa, wb = _weights(tmp_path / "c" / "checkpoint-last.pth"), _weights(tmp_path / "u" / "checkpoint-last.pth")
    assert torch.allclose(wa["head.1.weight"], wb["head.1.weight"], atol=1e-5)


@pytest.mark.parametrize("k", [0, 2])
def test_partial_trains_exactly_the_last_k_blocks_norm_and_head(k):
    model = build_vit("vit_tiny_patch16", img_size=32, num_classes=5, global_pool="avg")
    names = set(set_trainable(model, "partial", k))
    depth = len(model.blocks)
    expected = {n for n, _ in model.named_parameters()
                if n.startswith("head.") or (k > 0 and n.startswith("fc_norm."))
                or (n.startswith("blocks.") and int(n.split(".")[1]) >= depth - k)}
    assert names == expected
    assert set(set_trainable(model, "linear")) == {"head.weight", "head.bias"}
    assert len(set_trainable(model, "finetune")) == len(list(model.parameters()))


def test_partial_run_updates_only_those(synth_root, mae_ckpt, tmp_path):
    out = tmp_path / "part"
    assert main(run_args("in1k_partial", mae_ckpt, synth_root, out, epochs=1, extra=["blocks=1"])) == 0
    before, after = _weights(mae_ckpt), _weights(out / "checkpoint-last.pth")
    for k, v in after.items():
        moved = k not in before or not torch.equal(v, before[k])
        tuned = k.startswith(("blocks.11.", "head.", "fc_norm."))
        assert moved == tuned, k
    assert read_result(out)["blocks"] == 1


def test_mixup_cutmix_targets_sum_to_one():
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=7)
    np.random.seed(0)
    for _ in range(4):
        x, t = mix(torch.randn(6, 3, 32, 32), torch.randint(0, 7, (6,)))
        assert t.shape == (6, 7) and torch.allclose(t.sum(1), torch.ones(6))


def test_evaluation_equals_direct_computation():
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 6)
    xs, ys = torch.randn(23, 4), torch.randint(0, 6, (23,))
    batches = [(xs[i:i + 5], ys[i:i + 5]) for i in range(0, 23, 5)]
    stats = evaluate_classifier(lambda b: (head(b[0]), b[1]), batches, DistInfo())
    with torch.no_grad():
        logits = head(xs)
    top1 = (logits.argmax(1) == ys).float().mean().item() * 100
    top5 = np.mean([ys[i].item() in logits[i].topk(5).indices.tolist() for i in range(23)]) * 100
    assert stats["top1"] == pytest.approx(top1) and stats["top5"] == pytest.approx(top5) and stats["n"] == 23
    assert topk_correct(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]), ks=(1, 5)) == [1, 2]


def test_finetune_resumes_exactly(synth_root, mae_ckpt, tmp_path):
    full = tmp_path / "full"
    assert main(run_args("in1k_finetune", mae_ckpt, synth_root, full, epochs=2)) == 0
    part = tmp_path / "part"
    assert main(run_args("in1k_finetune", mae_ckpt, synth_root, part, epochs=2)) == 0
    (part / "checkpoint-last.pth").unlink()
    (part / "checkpoint-0.pth").rename(part / "checkpoint-last.pth")
    assert main([*run_args("in1k_finetune", mae_ckpt, synth_root, part, epochs=2), "--resume", "auto"]) == 0
    a, b = _weights(full / "checkpoint-last.pth"), _weights(part / "checkpoint-last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_result(full)["metrics"]["top1"] == read_result(part)["metrics"]["top1"]


def test_supervised_baseline_checkpoint_is_a_valid_supervised_init(synth_root, tmp_path):
    sup = tmp_path / "sup"
    assert main(run_args("in1k_finetune", "scratch", synth_root, sup, epochs=1, arch="vit_tiny_patch16",
                         extra=["runtime.ema_decay=0.9"])) == 0
    rec = read_result(sup)
    assert rec["init"]["kind"] == "scratch" and rec["arch"] == "vit_tiny_patch16" and "top1_raw" in rec["metrics"]
    out = tmp_path / "lin"
    assert main(run_args("in1k_linear", f"supervised:{sup / 'checkpoint-last.pth'}", synth_root, out, epochs=1)) == 0
    assert read_result(out)["init"]["kind"] == "supervised"


def test_unreadable_images_are_skipped_and_counted_or_fail_with_strict(synth_root, mae_ckpt, tmp_path, capsys):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(synth_root / "imagenet", data)
    victim = sorted((data / "train").rglob("*.png"))[0]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    out = tmp_path / "run"
    assert main(run_args("in1k_finetune", mae_ckpt, data, out, epochs=1, extra=["mixup.mixup=0.0", "mixup.cutmix=0.0"])) == 0
    rec = read_result(out)
    assert rec["dataset"]["skipped_samples"] == 1
    assert "1 training samples were unreadable" in capsys.readouterr().err
    code = main([*run_args("in1k_finetune", mae_ckpt, data, tmp_path / "strict", epochs=1), "--strict"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot decode image" in err and victim.name in err and "Traceback" not in err


def test_randaugment_at_full_magnitude_runs():
    from PIL import Image
    from transfer.classification.data import train_transform
    tf = train_transform("finetune", 32, {"auto_augment": "rand-m10-n6-mstd0-inc1", "reprob": 0.25})
    img = Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8))
    torch.manual_seed(0)
    for _ in range(30):  # posterize at magnitude 10 keeps 0 bits, which Pillow 13 refuses
        assert tf(img).shape == (3, 32, 32)


def test_partial_mlp_only_variant():
    model = build_vit("vit_tiny_patch16", img_size=32, num_classes=5, global_pool="avg")
    names = set(set_trainable(model, "partial", 1, part="mlp"))
    assert names == {n for n, _ in model.named_parameters()
                     if n.startswith(("head.", "fc_norm.", "blocks.11.mlp.", "blocks.11.norm2."))}
