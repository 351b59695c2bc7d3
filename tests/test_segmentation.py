"""ade20k_seg: metric vs an independent NumPy computation, UperNet shapes, data conventions, training, resume."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cli import main
from mae_core.checkpoint import read_checkpoint
from mae_core.distributed import DistInfo
from mae_core.errors import MaeBenchError
from results.record import read_result
from transfer.encoder import build_vit
from transfer.segmentation.backbone import ViTBackbone
from transfer.segmentation.data import (ADE20KDataset, list_pairs, read_num_classes, reduce_zero_label,
                                        resolve_root, train_pipeline)
from transfer.segmentation.evaluate import evaluate_segmenter
from transfer.segmentation.metrics import ConfusionMatrix, scores
from transfer.segmentation.model import Segmenter
from transfer.segmentation.train import build_segmenter

CPU = DistInfo()
# ViT-Tiny/16 on 64 px crops with a narrow head: a training step takes a fraction of a second on 2 cores
TINY = ["schedule.batch_size=8", "schedule.warmup_iters=2", "data.num_workers=0", "runtime.device=cpu",
        "runtime.log_every=1", "runtime.save_every=1", "runtime.keep_last=2", "model.channels=32",
        "model.aux_channels=16", "runtime.cpu_linear=onednn"]  # fixed: tests compare independent runs bitwise


def run_args(ckpt, data, out, iters, interval, extra=(), arch=None):
    sets = [a for s in [*TINY, f"schedule.iters={iters}", f"schedule.eval_interval={interval}", *extra]
            for a in ("--set", s)]
    argv = ["run", "--task", "ade20k_seg", "--ckpt", str(ckpt), "--data", str(data), "--out", str(out),
            "--recipe", "smoke", *sets]
    return argv + (["--arch", arch] if arch else [])


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory):
    from transfer.synth import generate
    root = tmp_path_factory.mktemp("segsynth")
    generate(root, n_train=48, n_val=12, img_size=64, seed=1, progress=False)
    return root


# ---- metric -------------------------------------------------------------------------------
def _numpy_reference(preds, labels, k, ignore=255):
    """mmseg's intersect_and_union per image, areas summed over the set, then nanmean."""
    inter, union, area_gt = np.zeros(k), np.zeros(k), np.zeros(k)
    for p, t in zip(preds, labels):
        valid = t != ignore
        p, t = p[valid], t[valid]
        for c in range(k):
            i = np.sum((p == c) & (t == c))
            inter[c] += i
            union[c] += np.sum(p == c) + np.sum(t == c) - i
            area_gt[c] += np.sum(t == c)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / union, inter / area_gt
    return 100 * np.nanmean(iou), 100 * np.nanmean(acc), 100 * inter.sum() / area_gt.sum()


def test_metric_equals_numpy_reference_over_the_whole_set():
    rng = np.random.default_rng(0)
    k = 7
    labels = [rng.integers(0, 5, size=(13, 17)) for _ in range(4)]  # classes 5, 6 never in the ground truth
    for t in labels:
        t[rng.random(t.shape) < 0.2] = 255
    preds = [np.where(rng.random(t.shape) < 0.6, np.where(t == 255, 0, t), rng.integers(0, 6, t.shape)) for t in labels]
    cm = ConfusionMatrix(k)
    for p, t in zip(preds, labels):
        cm.update(torch.from_numpy(p), torch.from_numpy(t))
    res = cm.compute()
    miou, macc, aacc = _numpy_reference(preds, labels, k)
    assert res["mIoU"] == pytest.approx(miou) and res["mAcc"] == pytest.approx(macc) and res["aAcc"] == pytest.approx(aacc)
    assert np.isnan(res["IoU"][6]) and not np.isnan(res["IoU"][5])  # 6: nowhere; 5: predicted only -> IoU 0
    assert res["IoU"][5] == 0 and np.isnan(res["Acc"][5])
    # one matrix over the set, not a mean of per-image scores
    per_image = np.mean([_numpy_reference([p], [t], k)[0] for p, t in zip(preds, labels)])
    assert abs(per_image - res["mIoU"]) > 1e-6


def test_perfect_predictions_score_100():
    t = torch.randint(0, 4, (2, 9, 9))
    t[0, :2] = 255
    cm = ConfusionMatrix(4)
    cm.update(torch.where(t == 255, 3, t), t)  # ignored pixels may hold any prediction
    res = cm.compute()
    assert res["mIoU"] == res["mAcc"] == res["aAcc"] == 100.0


def test_metric_rejects_out_of_range_labels():
    with pytest.raises(ValueError):
        ConfusionMatrix(3).update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 3))
    assert np.isnan(scores(np.zeros((2, 2)))["mIoU"])


# ---- model --------------------------------------------------------------------------------
def _segmenter(k=5, rel=True):
    vit = build_vit("vit_tiny_patch16", 64, 0)
    return Segmenter(ViTBackbone(vit, rel_pos_bias=rel, layer_scale_init=1.0), k, channels=16, aux_channels=8)


def test_upernet_output_has_the_input_size_and_class_count():
    model = _segmenter().eval()
    assert model.backbone.out_indices == (3, 5, 7, 11)
    x = torch.randn(2, 3, 64, 64)
    logits, aux = model(x)
    assert logits.shape == (2, 5, 16, 16) and aux is None  # stride 4; aux only in training
    feats = model.neck(model.backbone(x))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]  # strides 4, 8, 16, 32
    assert model.predict_logits(torch.randn(1, 3, 48, 80)).shape == (1, 5, 48, 80)  # other size: pos/rel-pos resampled
    slide = model.predict_logits(torch.randn(1, 3, 64, 96), mode="slide", crop=64, stride=32)
    assert slide.shape == (1, 5, 64, 96) and torch.isfinite(slide).all()
    model.train()
    assert model(x)[1].shape == (2, 5, 4, 4)  # the FCN head on level 2 (stride 16)


def test_relative_position_bias_and_layer_scale_start_as_the_identity():
    torch.manual_seed(0)
    plain = build_vit("vit_tiny_patch16", 64, 0).eval()
    ref = ViTBackbone(plain)
    x = torch.randn(1, 3, 64, 64)
    expected = [f.clone() for f in ref(x)]
    with_rel = ViTBackbone(plain, rel_pos_bias=True, layer_scale_init=1.0).eval()  # wraps the same weights
    for a, b in zip(expected, with_rel(x)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    table = with_rel.vit.blocks[0].attn.relative_position_bias_table
    with torch.no_grad():
        table.normal_()
    assert not torch.allclose(with_rel(x)[0], expected[0])


def test_layer_decay_follows_mmseg_rule():
    model = _segmenter()
    groups = model.param_groups(0.05, 0.5)
    scale = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["backbone.vit.patch_embed.proj.weight"])] == (0.5 ** 13, 0.05)
    assert scale[id(named["backbone.vit.pos_embed"])] == (0.5 ** 13, 0.05)  # decayed, as mmseg 1.2.2 does
    assert scale[id(named["backbone.vit.cls_token"])] == (0.5 ** 13, 0.05)
    intended = {id(p): g["weight_decay"] for g in model.param_groups(0.05, 0.5, ("pos_embed", "cls_token"))
                for p in g["params"]}
    assert intended[id(named["backbone.vit.pos_embed"])] == intended[id(named["backbone.vit.cls_token"])] == 0.0
    assert scale[id(named["backbone.vit.blocks.0.attn.qkv.weight"])] == (0.5 ** 12, 0.05)
    assert scale[id(named["backbone.vit.blocks.11.mlp.fc1.bias"])] == (0.5, 0.0)
    assert scale[id(named["decode_head.conv_seg.weight"])] == (1.0, 0.05)
    assert sum(len(g["params"]) for g in groups) == len(named)


def _reference_ce(logits: np.ndarray, label: np.ndarray, avg_non_ignore: bool) -> float:
    """mmseg's CrossEntropyLoss from its semantics: per-pixel -log softmax at the label, 0 at ignored pixels,
    summed and divided by all pixels of the batch (avg_non_ignore=False) or by the labelled ones (+ eps)."""
    z = logits.astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, logits.shape[1])
    y = label.reshape(-1)
    keep = y != 255
    logp = z - (np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1))[:, None]
    total = -logp[keep, y[keep]].sum()
    return total / ((keep.sum() if avg_non_ignore else y.size) + np.finfo(np.float32).eps)


@pytest.mark.parametrize("avg_non_ignore", [False, True])
def test_loss_reduction_follows_mmseg_cross_entropy(avg_non_ignore):
    from transfer.segmentation.model import seg_loss, total_loss
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 6, 7)).astype(np.float32)
    label = rng.integers(0, 4, (2, 6, 7))
    label[0, :3] = 255
    ref = _reference_ce(logits, label, avg_non_ignore)
    got = seg_loss(torch.from_numpy(logits), torch.from_numpy(label), avg_non_ignore)
    assert got.item() == pytest.approx(ref, rel=1e-6)
    aux = rng.normal(size=(2, 4, 6, 7)).astype(np.float32)
    both = total_loss(torch.from_numpy(logits), torch.from_numpy(aux), torch.from_numpy(label), 0.4, avg_non_ignore)
    assert both.item() == pytest.approx(ref + 0.4 * _reference_ce(aux, label, avg_non_ignore), rel=1e-6)
    none = torch.full((1, 6, 7), 255)
    assert seg_loss(torch.from_numpy(logits[:1]), none, avg_non_ignore).item() == 0.0


def test_paper_recipe_matches_the_mmseg_config_settings_of_issue_11():
    """Loss averaged over all pixels (CrossEntropyLoss default), slide stride 341 for 512 crops (the full
    comparison with mmseg's own config is tests/test_mmseg_parity.py)."""
    from benchmarks.config import load_recipe, resolved
    cfg = resolved(load_recipe("ade20k_seg", "paper"))
    assert cfg["model"]["avg_non_ignore"] is False
    assert (cfg["test"]["mode"], cfg["test"]["crop_size"], cfg["test"]["stride"]) == ("slide", 512, 341)


def test_head_convs_start_with_mmcv_conv_module_init():
    """mmcv ConvModule.init_weights: kaiming_init(conv) = kaiming_normal_(mode='fan_out', nonlinearity='relu'),
    std sqrt(2 / (out_channels * k * k)); BN weight 1, bias 0. conv_seg: normal(std 0.01), bias 0."""
    vit = build_vit("vit_tiny_patch16", 64, 0)
    model = Segmenter(ViTBackbone(vit), 20, channels=64, aux_channels=32)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and "head" in n]
    assert len(convs) == 15  # 4 PPM + bottleneck + 3 lateral + 3 FPN + fusion + classifier; aux conv + classifier
    for name, conv in convs:
        w = conv.weight.detach()
        if name.endswith("conv_seg"):
            assert w.std().item() == pytest.approx(0.01, rel=0.1) and not conv.bias.any()
            continue
        out, _, kh, kw = w.shape
        assert conv.bias is None and w.std().item() == pytest.approx((2 / (out * kh * kw)) ** 0.5, rel=0.05), name
        assert abs(w.mean().item()) < 0.05 * w.std().item()
    w = model.decode_head.fpn_bottleneck[0].weight.detach()
    assert 0.67 < (w.abs() < w.std()).float().mean().item() < 0.70  # normal (0.683), not uniform (0.577)
    for bn in (m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and "head" in n):
        assert (bn.weight == 1).all() and (bn.bias == 0).all()


# ---- data ---------------------------------------------------------------------------------
def test_reduce_zero_label_maps_0_to_ignore_and_shifts_the_rest():
    raw = np.array([[0, 1, 2], [150, 255, 7]], dtype=np.uint8)
    assert reduce_zero_label(raw).tolist() == [[255, 0, 1], [149, 255, 6]]


def test_layout_resolution_and_class_count(seg_root):
    root, name = resolve_root(seg_root)
    assert name == "synthetic-ade20k" and root.name == "ADEChallengeData2016"
    assert resolve_root(seg_root / "ade20k")[0] == root == resolve_root(root)[0]
    assert read_num_classes(root) == 11
    every = list_pairs(root, "train")
    five, three = list_pairs(root, "train", subset=5), list_pairs(root, "train", subset=3)
    # --subset draws as every task does: a fixed seed-0 permutation (not the first names), smaller inside larger
    assert five == [every[i] for i in np.sort(np.random.default_rng(0).permutation(len(every))[:5])]
    assert set(three) <= set(five) and len(five) == 5
    with pytest.raises(MaeBenchError, match="no ADE20K layout"):
        resolve_root(seg_root / "imagenet")


def test_train_pipeline_gives_fixed_crops_with_valid_labels(seg_root):
    root, _ = resolve_root(seg_root)
    from benchmarks.config import load_recipe, resolved
    d = resolved(load_recipe("ade20k_seg", "smoke"))["data"]
    ds = ADE20KDataset(root, "train", d, 11, train=True, crop=64)
    x, y, ok = ds[(0, 123)]
    assert ok and x.shape == (3, 64, 64) and y.shape == (64, 64)
    assert set(y.unique().tolist()) <= set(range(11)) | {255}
    x2, y2, _ = ds[(0, 123)]
    assert torch.equal(x, x2) and torch.equal(y, y2)  # the per-sample seed decides the augmentation
    img = Image.new("RGB", (200, 10))  # resized to at most 25 px high: the crop must be padded
    _, lab = train_pipeline(img, np.zeros((10, 200), np.uint8), np.random.default_rng(0), d, 64)
    assert lab.shape == (64, 64) and (lab == 255).any()  # padded with ignore
    val = ADE20KDataset(root, "val", d, 11, train=False)
    vx, vy, name = val[0]
    assert vx.shape[1:] == vy.shape == (64, 64) and name == list_pairs(root, "val")[0][0].stem


def test_mismatched_pairs_and_missing_files_are_one_clear_error(seg_root, tmp_path):
    import shutil
    data = tmp_path / "ADEChallengeData2016"
    shutil.copytree(resolve_root(seg_root)[0], data)
    victim = sorted((data / "annotations" / "validation").glob("*.png"))[0]
    victim.unlink()
    with pytest.raises(MaeBenchError, match=f"1 images without a label map.*{victim.stem}"):
        list_pairs(data, "val")
    shutil.rmtree(data / "images" / "training")
    with pytest.raises(MaeBenchError, match="not found"):
        list_pairs(data, "train")
    out = tmp_path / "run"
    assert main(run_args("scratch", data, out, 2, 2, arch="vit_tiny_patch16")) == 1


# ---- training, resume, predictions ----------------------------------------------------------
# Seconds of CPU training cannot generalise, so the training tests evaluate on the scenes they train on
# (validation = a copy of training), 32 px crops without scale jitter or colour distortion.
MEMO = ["model.img_size=32", "data.scale=(128,32)", "data.test_scale=(128,32)", "data.ratio_range=(1.0,1.0)",
        "data.photometric=False", "optim.lr=1e-3", "optim.layer_decay=1.0"]


@pytest.fixture(scope="module")
def memo_root(tmp_path_factory):
    import shutil
    from transfer.synth import generate
    root = tmp_path_factory.mktemp("memo")
    generate(root, n_train=8, n_val=8, img_size=32, seed=1, progress=False)
    ade = root / "ade20k" / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        shutil.rmtree(ade / kind / "validation")
        shutil.copytree(ade / kind / "training", ade / kind / "validation")
    return root


def test_short_training_raises_miou_and_saves_rescoreable_predictions(memo_root, mae_ckpt, tmp_path):
    from benchmarks.config import load_recipe, parse_overrides, resolved
    cfg = resolved(load_recipe("ade20k_seg", "smoke", parse_overrides(TINY + MEMO)))
    root, _ = resolve_root(memo_root)
    untrained, _ = build_segmenter(cfg["model"], 32, str(mae_ckpt), None, 11)
    before = evaluate_segmenter(untrained, ADE20KDataset(root, "val", cfg["data"], 11, train=False), CPU, cfg["test"], 11)
    out = tmp_path / "run"
    assert main([*run_args(mae_ckpt, memo_root, out, 30, 30, MEMO), "--save-preds"]) == 0
    rec = read_result(out)
    assert rec["init"]["kind"] == "mae" and rec["dataset"]["num_classes"] == 11
    after = rec["metrics"]
    assert after["mIoU"] > before["mIoU"] + 8 and after["aAcc"] > before["aAcc"] + 20, (before, after)
    # the saved maps (ADE20K ids 1..K, the label map's size) re-score to the same numbers
    cm = ConfusionMatrix(11)
    for img, ann in list_pairs(root, "val"):
        pred = np.array(Image.open(out / "preds" / f"{img.stem}.png"))
        label = reduce_zero_label(np.array(Image.open(ann)))
        assert pred.shape == label.shape and pred.min() >= 1 and pred.max() <= 11
        cm.update(torch.from_numpy(pred.astype(np.int64) - 1), torch.from_numpy(label.astype(np.int64)))
    assert cm.compute()["mIoU"] == pytest.approx(after["mIoU"])
    # --eval-only on the trained segmenter gives the same numbers
    ev = tmp_path / "eval"
    assert main([*run_args(mae_ckpt, memo_root, ev, 30, 30, MEMO), "--eval-only", "--weights",
                 str(out / "model_final.pth")]) == 0
    assert read_result(ev)["metrics"] == pytest.approx(after)
    assert main([*run_args(mae_ckpt, memo_root, ev, 30, 30, MEMO), "--eval-only"]) == 1  # no --weights


def test_resumed_run_equals_unbroken(memo_root, tmp_path):
    extra = [*MEMO, "data.photometric=True", "data.ratio_range=(0.5,2.0)", "schedule.batch_size=4"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(run_args("scratch", memo_root, full, 4, 2, extra, arch="vit_tiny_patch16")) == 0
    assert main(run_args("scratch", memo_root, part, 4, 2, extra, arch="vit_tiny_patch16")) == 0
    (part / "checkpoint-last.pth").unlink()
    (part / "checkpoint-0.pth").rename(part / "checkpoint-last.pth")
    assert main([*run_args("scratch", memo_root, part, 4, 2, extra, arch="vit_tiny_patch16"), "--resume", "auto"]) == 0
    a, b = read_checkpoint(full / "model_final.pth")["model"], read_checkpoint(part / "model_final.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_result(full)["metrics"] == read_result(part)["metrics"]
    logs = [json.loads(line) for line in (part / "log.jsonl").read_text().splitlines()]
    # the log is rewound to the resumed checkpoint (epoch 0), then the resumed run logs epoch 1 once
    assert [(r["type"], r["epoch"]) for r in logs if r["type"] in ("epoch", "resume")] == [
        ("epoch", 0), ("resume", 0), ("epoch", 1)]


def test_evaluation_runs_in_fp32_while_training_runs_under_autocast(memo_root, tmp_path, monkeypatch):
    """mmseg's reported numbers are fp32 evaluations: the evaluation after an autocast training epoch must not
    inherit it. AMP is CUDA-only in the engine; here it is forced onto the CPU to see it."""
    import mae_core.engine
    seen = {"train": [], "eval": []}
    forward, predict = Segmenter.forward, Segmenter.predict_logits

    def traced_forward(self, img):
        if self.training:
            seen["train"].append(torch.is_autocast_enabled("cpu"))
        return forward(self, img)

    def traced_predict(self, *args, **kwargs):
        seen["eval"].append(torch.is_autocast_enabled("cpu"))
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "forward", traced_forward)
    monkeypatch.setattr(Segmenter, "predict_logits", traced_predict)
    monkeypatch.setattr(mae_core.engine, "amp_context",
                        lambda device, amp: ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)), None))
    extra = [*MEMO, "runtime.cpu_linear=aten", "schedule.batch_size=2"]
    assert main(run_args("scratch", memo_root, tmp_path / "run", 2, 2, extra, arch="vit_tiny_patch16")) == 0
    assert seen["train"] and all(seen["train"]) and seen["eval"] and not any(seen["eval"])


def test_warmup_then_poly_schedule_honours_layer_decay():
    from transfer.segmentation.train import poly_schedule
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "lr_scale": 1.0}, {"params": [p2], "lr_scale": 0.5}], lr=1e-4)
    sched = poly_schedule(opt, total=100, warmup=10, power=1.0, min_lr=0.0, warmup_ratio=1e-6, lr=1e-4)
    expected = {0: 1e-10, 5: 1e-10 + 5 * (1e-4 - 1e-10) / 10, 10: 1e-4, 55: 0.5e-4, 99: 1e-4 / 90}
    for t, lr in expected.items():
        sched.step_update(t)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-6)
        assert opt.param_groups[1]["lr"] == pytest.approx(lr / 2, rel=1e-6)


def test_unreadable_training_images_are_skipped_and_counted_or_fail_with_strict(memo_root, tmp_path):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(memo_root / "ade20k", data)
    victim = sorted((data / "ADEChallengeData2016" / "images" / "training").glob("*.jpg"))[0]
    victim.write_bytes(b"\xff\xd8\xff" + b"\x00" * 20)
    out = tmp_path / "run"
    assert main(run_args("scratch", data, out, 2, 2, MEMO, arch="vit_tiny_patch16")) == 0
    assert read_result(out)["dataset"]["skipped_samples"] == 2  # 16 draws over 8 images: each one twice
    assert main([*run_args("scratch", data, tmp_path / "strict", 2, 2, MEMO, arch="vit_tiny_patch16"), "--strict"]) == 1
