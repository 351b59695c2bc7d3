"""ade20k_seg against mmsegmentation 1.2.2 itself (the `interop` extra): mmseg's modules are built from its own
MAE ADE20K config (scaled down to ViT-Tiny on 64 px), loaded with our weights through `export --to mmseg`,
and compared with ours: backbone features, logits (whole and sliding window), decode + auxiliary losses,
gradients of a training step, the evaluation metric, the head initialisation and the recipe's settings; and
mmseg's data transforms (its config's test pipeline, RandomResize's resize, PhotoMetricDistortion) with ours.

Scaled-down changes to the config: ViT-Tiny (192 wide, 12 blocks, 3 heads) at 64 px, head widths 16 / 8,
5 classes, SyncBN -> BN (one process), drop path and dropout 0 (so a training step is deterministic),
slide crop 64 / stride 43 (512 / 341 scaled).
"""
import copy
import inspect

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cli import main
from mae_core.checkpoint import save_checkpoint
from mae_core.distributed import DistInfo
from tests.conftest import tiny_mae
from tests.mmseg_oracle import import_mmseg, mae_config

mmseg = import_mmseg()
if mmseg is None:
    pytest.skip("mmsegmentation / mmcv-lite not installed: pip install -e '.[dev,interop]'", allow_module_level=True)

from mmengine.runner import load_checkpoint  # noqa: E402  (installed with mmseg)
from mmengine.structures import PixelData  # noqa: E402
from mmseg.evaluation import IoUMetric  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from benchmarks.config import load_recipe, parse_overrides, resolved  # noqa: E402
from mae_core.images import open_rgb  # noqa: E402
from transfer.segmentation.data import (ADE20KDataset, list_pairs, photometric_distortion, read_label,  # noqa: E402
                                        train_pipeline)
from transfer.segmentation.evaluate import evaluate_segmenter  # noqa: E402
from transfer.segmentation.export import segmenter_to_mmseg  # noqa: E402
from transfer.segmentation.metrics import ConfusionMatrix  # noqa: E402
from transfer.segmentation.model import seg_loss, total_loss  # noqa: E402
from transfer.segmentation.train import build_segmenter  # noqa: E402

K, CROP, STRIDE = 5, 64, 43
SMALL = ["model.img_size=64", "model.channels=16", "model.aux_channels=8", "model.drop_path=0.0", "model.dropout=0.0",
         f"test.crop_size={CROP}", f"test.stride={STRIDE}"]
BN = dict(type="BN", requires_grad=True)


def paper_recipe(extra=()):
    return resolved(load_recipe("ade20k_seg", "paper", parse_overrides([*SMALL, *extra])))


def mmseg_model(pretrained: str):
    """mmseg's EncoderDecoder from its MAE config, scaled down (module docstring), backbone from `pretrained`."""
    cfg = mae_config().model
    cfg.pretrained = pretrained  # = init_cfg=dict(type='Pretrained', checkpoint=pretrained) on the backbone
    cfg.backbone.update(img_size=(CROP, CROP), embed_dims=192, num_heads=3, drop_path_rate=0.0)
    cfg.neck.update(embed_dim=192, norm_cfg=BN)
    cfg.decode_head.update(in_channels=[192] * 4, channels=16, num_classes=K, norm_cfg=BN, dropout_ratio=0.0)
    cfg.auxiliary_head.update(in_channels=192, channels=8, num_classes=K, norm_cfg=BN, dropout_ratio=0.0)
    cfg.test_cfg.update(crop_size=(CROP, CROP), stride=(STRIDE, STRIDE))
    model = MODELS.build(cfg)
    model.init_weights()  # what mmengine's Runner does: ConvModule / conv_seg init, then the pretrained backbone
    return model


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(ours, mmseg's) right after initialisation from the same MAE checkpoint (32 px pretraining grid)."""
    tmp = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)  # the heads' fresh init draws from the global RNG: the same draws whatever ran before
    mae = tiny_mae(img_size=32)
    with torch.no_grad():  # MAE initialises biases to zero; make them matter
        for name, p in mae.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.2)
    save_checkpoint(tmp / "mae.pth", mae.state_dict(), config={**mae.config, "arch": "vit_tiny_patch16"})
    assert main(["export", "--to", "mmseg", "--ckpt", str(tmp / "mae.pth"), "--out", str(tmp / "enc.pth")]) == 0
    cfg = paper_recipe()
    ours, _ = build_segmenter(cfg["model"], CROP, str(tmp / "mae.pth"), None, K)
    return ours, mmseg_model(str(tmp / "enc.pth")), cfg


def _randomise(model):
    """Make every part matter: relative position tables, layer scale, BN affine and statistics, classifiers."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif name.endswith(".gamma") or (p.ndim == 1 and name.endswith(".weight") and "backbone" not in name):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif "conv_seg" in name or (p.ndim == 1 and "backbone" not in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


@pytest.fixture(scope="module")
def pair(built, tmp_path_factory):
    """(ours randomised, mmseg's with our whole segmenter loaded through `export --to mmseg`)."""
    ours, theirs, cfg = copy.deepcopy(built[0]), copy.deepcopy(built[1]), built[2]
    _randomise(ours)
    tmp = tmp_path_factory.mktemp("seg")
    save_checkpoint(tmp / "model_final.pth", ours.state_dict(), epoch=0,
                    config={"task": "ade20k_seg", "arch": "vit_tiny_patch16", "num_classes": K, "recipe": cfg})
    assert main(["export", "--to", "mmseg", "--ckpt", str(tmp / "model_final.pth"), "--out", str(tmp / "seg.pth")]) == 0
    exported = set(torch.load(tmp / "seg.pth", weights_only=True))
    index_buffers = {f"backbone.layers.{i}.attn.relative_position_index" for i in range(12)}  # mmseg's, persistent
    assert exported == set(theirs.state_dict()) - index_buffers
    load_checkpoint(theirs, str(tmp / "seg.pth"), map_location="cpu", strict=False)
    return ours, theirs, cfg


def _metas(h, w, ori=None):
    return [dict(img_shape=(h, w), ori_shape=ori or (h, w), pad_shape=(h, w), padding_size=[0, 0, 0, 0])]


def _close(a, b, tol=1e-5, floor=1e-12):
    """|a - b| <= tol x the largest |b| (one scale for the whole tensor, at least `floor`)."""
    scale = b.abs().max().clamp(min=floor)
    assert ((a - b).abs().max() / scale).item() <= tol, f"max diff {(a - b).abs().max().item():.3g}, scale {scale.item():.3g}"


def test_exported_encoder_loads_into_mmseg_mae_with_the_same_features(built):
    """export --to mmseg -> mmseg's MAE init_cfg Pretrained (pos_embed resized 2x2 -> 4x4 by mmseg): our features."""
    ours, theirs, _ = built
    ours.eval(), theirs.eval()
    x = torch.randn(2, 3, CROP, CROP)
    with torch.no_grad():
        for a, b in zip(ours.backbone(x), theirs.backbone(x)):
            _close(a, b)


def test_logits_whole_and_sliding_window(pair):
    ours, theirs, cfg = pair
    ours.eval(), theirs.eval()
    t = cfg["test"]
    x = torch.randn(1, 3, CROP, CROP)
    with torch.no_grad():
        _close(ours.predict_logits(x, "whole"), theirs.encode_decode(x, _metas(CROP, CROP)))
        x = torch.randn(1, 3, 80, 107)  # 2 x 3 windows of 64 at stride 43, overlapping
        _close(ours.predict_logits(x, t["mode"], t["crop_size"], t["stride"]), theirs.slide_inference(x, _metas(80, 107)))


def _samples(label):
    return [SegDataSample(gt_sem_seg=PixelData(data=y[None])) for y in label]


def _training_step(ours, theirs, m, x, label):
    """(our decode and aux losses, mmseg's loss dict) of one training forward; both totals back-propagated."""
    logits, aux = ours(x)
    mine = {"decode": seg_loss(logits, label, m["avg_non_ignore"]),
            "aux": m["aux_weight"] * seg_loss(aux, label, m["avg_non_ignore"])}
    total = total_loss(logits, aux, label, m["aux_weight"], m["avg_non_ignore"])
    torch.testing.assert_close(total, mine["decode"] + mine["aux"])
    ref = theirs.loss(x, _samples(label))
    total.backward()
    (ref["decode.loss_ce"] + ref["aux.loss_ce"]).backward()
    return mine, ref


def test_losses_and_gradients_of_a_training_step(pair):
    """Train mode (BN on batch statistics), the recipe's loss settings (avg_non_ignore, aux weight) against the
    config's CrossEntropyLoss(loss_weight 1.0 / 0.4); a third of the pixels ignored, so the averaging matters."""
    m = pair[2]["model"]
    x = torch.randn(4, 3, CROP, CROP) + 2 * torch.randn(4, 3, 1, 1)  # images that differ: the PPM's 1x1 level
    label = torch.randint(0, K, (4, CROP, CROP))                      # has 4 distinct values for its BN
    label[:, :20] = 255
    ours, theirs = copy.deepcopy(pair[0]).train(), copy.deepcopy(pair[1]).train()
    mine, ref = _training_step(ours, theirs, m, x, label)
    for k in ("decode", "aux"):
        _close(mine[k], ref[f"{k}.loss_ce"])
    _close(ours.decode_head.fpn_bottleneck[1].running_var, theirs.decode_head.fpn_bottleneck.bn.running_var)
    # Gradients in float64: in float32, rounding can flip which element of a max-pool window (or which side of
    # a ReLU) wins and move a gradient, a discontinuity of the function, not a difference between the codes.
    ours, theirs = copy.deepcopy(pair[0]).train().double(), copy.deepcopy(pair[1]).train().double()
    _training_step(ours, theirs, m, x.double(), label)
    named = dict(theirs.named_parameters())
    grads = {k: p.grad for k, p in segmenter_to_mmseg(dict(ours.named_parameters())).items()}
    assert set(grads) == set(named)
    # each tensor on its own scale, at least 1e-3 of the largest gradient: a few are zero but for rounding
    # (conv biases followed by BN: the neck's transposed convs before the BN or the lateral convs)
    floor = 1e-3 * max(p.grad.abs().max() for p in named.values())
    for k, g in grads.items():
        _close(g, named[k].grad, 1e-6, floor)


@pytest.mark.parametrize("avg_non_ignore", [False, True])
def test_cross_entropy_reduction_equals_mmseg(avg_non_ignore):
    ce = MODELS.build(dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=avg_non_ignore))
    logits = torch.randn(3, K, 9, 11)
    label = torch.randint(0, K, (3, 9, 11))
    label[0] = 255
    label[1, :4] = 255
    _close(seg_loss(logits, label, avg_non_ignore), ce(logits, label, ignore_index=255))
    none = torch.full((1, 9, 11), 255)
    assert seg_loss(logits[:1], none, avg_non_ignore) == 0 == ce(logits[:1], none, ignore_index=255)


def test_evaluation_and_metric_equal_mmseg_predict_and_iou_metric(pair):
    """Sliding-window logits resized to the label map (here larger than the input, as for ADE20K after the test
    resize), argmax, then mmseg's IoUMetric vs our confusion matrix, with ignored pixels."""
    ours, theirs, cfg = pair
    ours.eval(), theirs.eval()
    g = torch.Generator().manual_seed(2)
    data = []
    for i, (h, w, oh, ow) in enumerate([(64, 96, 70, 101), (80, 64, 97, 80), (64, 64, 64, 64)]):
        y = torch.randint(0, K - 1, (oh, ow), generator=g)  # class K-1 never in the ground truth
        y[: oh // 4] = 255
        data.append((torch.randn(3, h, w, generator=g), y, f"img{i}"))
    res = evaluate_segmenter(ours, data, DistInfo(), cfg["test"], K)
    metric = IoUMetric(iou_metrics=["mIoU"], ignore_index=255)
    metric.dataset_meta = dict(classes=[f"c{i}" for i in range(K)])
    with torch.no_grad():
        for x, y, _ in data:
            out = theirs.predict(x[None], [SegDataSample(metainfo=_metas(*x.shape[1:], ori=tuple(y.shape))[0])])[0]
            metric.process({}, [dict(pred_sem_seg=dict(data=out.pred_sem_seg.data), gt_sem_seg=dict(data=y[None]))])
    areas = [sum(r[i] for r in metric.results) for i in range(4)]
    per_class = IoUMetric.total_area_to_metrics(*areas, ["mIoU"])  # float32 areas and ratios in mmseg
    np.testing.assert_allclose(np.array(res["IoU"]) / 100, np.asarray(per_class["IoU"]), rtol=1e-6)
    np.testing.assert_allclose(np.array(res["Acc"]) / 100, np.asarray(per_class["Acc"]), rtol=1e-6)
    summary = metric.compute_metrics(metric.results)  # rounded to 2 decimals by mmseg
    assert {k: round(res[k], 2) for k in ("aAcc", "mIoU", "mAcc")} == pytest.approx(summary, abs=1e-9)
    assert np.isnan(res["Acc"][K - 1])  # never in the ground truth: left out of mAcc, as in mmseg


def test_metric_on_random_predictions_with_absent_classes():
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix(7)
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = dict(classes=[str(i) for i in range(7)])
    for _ in range(3):
        y = torch.from_numpy(rng.integers(0, 5, (13, 17)))
        y[torch.from_numpy(rng.random((13, 17)) < 0.3)] = 255
        p = torch.from_numpy(rng.integers(0, 6, (13, 17)))  # 5: predicted only; 6: nowhere
        cm.update(p, y)
        metric.process({}, [dict(pred_sem_seg=dict(data=p[None]), gt_sem_seg=dict(data=y[None]))])
    res = cm.compute()
    inter, union, pred, gt = (sum(r[i] for r in metric.results).numpy() for i in range(4))
    mat = cm.mat.numpy()  # the same pixel counts, exactly
    assert (np.diag(mat) == inter).all() and (mat.sum(0) == pred).all() and (mat.sum(1) == gt).all()
    assert (mat.sum(0) + mat.sum(1) - np.diag(mat) == union).all()
    per_class = IoUMetric.total_area_to_metrics(*[torch.from_numpy(a) for a in (inter, union, pred, gt)], ["mIoU"])
    np.testing.assert_allclose(np.array(res["IoU"]) / 100, np.asarray(per_class["IoU"]), rtol=1e-6)
    assert np.isnan(res["IoU"][6]) and res["IoU"][5] == 0
    summary = metric.compute_metrics(metric.results)
    assert {k: round(res[k], 2) for k in ("aAcc", "mIoU", "mAcc")} == pytest.approx(summary, abs=1e-9)


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory):
    """An ADEChallengeData2016 folder with PNG images (no JPEG decoder differences): one to shrink, one to enlarge."""
    root = tmp_path_factory.mktemp("ade") / "ADEChallengeData2016"
    rng = np.random.default_rng(3)
    for sub in ("training", "validation"):
        (root / "images" / sub).mkdir(parents=True)
        (root / "annotations" / sub).mkdir(parents=True)
        for name, (h, w) in (("a", (530, 700)), ("b", (200, 300))):
            smooth = np.kron(rng.integers(0, 256, (h // 10 + 1, w // 10 + 1, 3)), np.ones((10, 10, 1)))[:h, :w]
            img = np.clip(smooth + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)  # fine detail: antialiasing shows
            Image.fromarray(img).save(root / "images" / sub / f"{name}.png")
            Image.fromarray(rng.integers(0, 151, (h, w)).astype(np.uint8)).save(root / "annotations" / sub / f"{name}.png")
    return root


def _normalise(bgr_chw: torch.Tensor) -> torch.Tensor:
    """mmseg's SegDataPreProcessor of the config: BGR -> RGB, (x - mean) / std."""
    pre = mae_config().model.data_preprocessor
    mean, std = torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)
    return (bgr_chw.flip(0).float() - mean) / std


def test_evaluation_data_equals_mmseg_test_pipeline(ade_root):
    """mmseg's own test_pipeline (LoadImageFromFile, Resize (2048, 512) keep ratio, LoadAnnotations with
    reduce_zero_label) and data preprocessor against our evaluation items."""
    from mmcv.transforms import Compose
    cfg = mae_config()
    pipeline = Compose(cfg.test_pipeline)
    d = paper_recipe()["data"]
    ours = ADE20KDataset(ade_root, "val", d, 150, train=False)
    for i, (img, ann) in enumerate(list_pairs(ade_root, "val")):
        ref = pipeline(dict(img_path=str(img), seg_map_path=str(ann), reduce_zero_label=True, seg_fields=[]))
        x, y, _ = ours[i]
        assert x.shape == ref["inputs"].shape  # (3, 512, 676): shrunk; (3, 512, 768): enlarged
        torch.testing.assert_close(x, _normalise(ref["inputs"]), atol=1e-5, rtol=0)
        assert torch.equal(y, ref["data_samples"].gt_sem_seg.data[0].long())


def test_training_resize_equals_mmcv_random_resize(ade_root):
    """Our training resize for a drawn ratio r = mmcv's RandomResize: Resize to (int(2048 r), int(512 r)) keep ratio,
    image bilinear and label nearest (cv2, no antialiasing); seen through an uncropped, unflipped window."""
    from mmcv.transforms import Resize
    from mmseg.datasets.transforms import LoadAnnotations

    class Draws:  # the ratio r, crop offset 0, no flip
        def __init__(self, r):
            self.r = r

        def uniform(self, *a):
            return self.r

        def integers(self, *a):
            return 0

        def random(self):
            return 1.0

    d = dict(paper_recipe()["data"], photometric=False, cat_max_ratio=1.0)
    img_path, ann_path = list_pairs(ade_root, "train")[0]
    label = read_label(ann_path, 150)
    for r in (0.537, 1.731):
        x, y = train_pipeline(open_rgb(img_path), label, Draws(r), d, crop=1024)
        ref = LoadAnnotations(reduce_zero_label=True)(dict(img=np.asarray(Image.open(img_path))[..., ::-1].copy(),
                                                           seg_map_path=str(ann_path), reduce_zero_label=True,
                                                           seg_fields=[]))
        ref = Resize(scale=(int(2048 * r), int(512 * r)), keep_ratio=True)(ref)
        h, w = (min(n, 1024) for n in ref["img"].shape[:2])  # the crop's top-left window
        assert (y[h:] == 255).all() and (y[:, w:] == 255).all()  # padding beyond the resized image
        ref_img = torch.from_numpy(np.ascontiguousarray(ref["img"][:h, :w].transpose(2, 0, 1)))
        torch.testing.assert_close(x[:, :h, :w], _normalise(ref_img), atol=1e-5, rtol=0)
        assert torch.equal(y[:h, :w], torch.from_numpy(ref["gt_seg_map"][:h, :w]).long())


def test_photometric_distortion_equals_mmseg():
    """mmseg's PhotoMetricDistortion draws from numpy's global generator; ours from the generator it is given.
    Replaying the same draws (in the same order) must give the same image, byte for byte, for every branch."""
    from mmseg.datasets.transforms import PhotoMetricDistortion

    class GlobalDraws:  # np.random's randint / uniform behind our Generator calls
        def integers(self, low, high=None):
            return np.random.randint(low, high)

        def uniform(self, low, high):
            return np.random.uniform(low, high)

    rgb = np.random.default_rng(4).integers(0, 256, (24, 32, 3)).astype(np.uint8)
    changed = 0
    for seed in range(40):  # 2^5 branch combinations, each likely hit
        np.random.seed(seed)
        ref = PhotoMetricDistortion()(dict(img=rgb[..., ::-1].copy()))["img"][..., ::-1]
        np.random.seed(seed)
        ours = photometric_distortion(rgb.copy(), GlobalDraws())
        assert np.array_equal(ours, ref), seed
        changed += not np.array_equal(ours, rgb)
    assert changed > 30


def _conv_stds(named: dict) -> dict:
    """{name: (weight std, element count)} of every head conv (ConvModules and classifiers) among mmseg-named
    parameters."""
    return {k: (p.std().item(), p.numel()) for k, p in named.items()
            if k.endswith("weight") and p.ndim == 4 and k.split(".")[0] in ("decode_head", "auxiliary_head")}


def test_head_init_follows_mmseg_conv_module(built):
    """Ours and mmseg's freshly initialised heads: the same weight std per conv (kaiming-normal fan_out relu
    for ConvModules, 0.01 for conv_seg) and BN weight 1, bias 0."""
    ours, theirs, _ = built
    mine = _conv_stds(segmenter_to_mmseg(dict(ours.named_parameters())))
    ref = _conv_stds(dict(theirs.named_parameters()))
    assert set(mine) == set(ref) and len(mine) == 15
    for k, (std, n) in mine.items():
        # two samples' stds differ by ~1/sqrt(n) relative (sd): 5 of those, at least 0.3 (the aux classifier has 40
        # weights); a different init scheme (kaiming fan_out vs normal 0.01 vs torch's default) is 3x or more off
        assert std == pytest.approx(ref[k][0], rel=max(0.3, 5 / n ** 0.5)), k
    bn = theirs.decode_head.fpn_bottleneck.bn
    assert torch.equal(bn.weight, ours.decode_head.fpn_bottleneck[1].weight) and not bn.bias.any()


def test_paper_recipe_equals_mmseg_mae_config():
    """Every setting of mmseg's configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py our paper recipe models."""
    cfg = mae_config()
    ours = resolved(load_recipe("ade20k_seg", "paper"))
    m, d, t, o, s = ours["model"], ours["data"], ours["test"], ours["optim"], ours["schedule"]
    bb, dh, ah = cfg.model.backbone, cfg.model.decode_head, cfg.model.auxiliary_head
    assert (m["img_size"], tuple(bb.img_size)) == (512, (512, 512))
    assert tuple(bb.out_indices) == (3, 5, 7, 11) and m["out_indices"] is None  # None: (3, 5, 7, 11) for ViT-B
    assert (m["drop_path"], m["layer_scale_init"]) == (bb.drop_path_rate, bb.init_values) == (0.1, 1.0)
    assert list(cfg.model.neck.rescales) == [4, 2, 1, 0.5]
    assert (m["channels"], tuple(m["pool_scales"]), m["dropout"]) == (dh.channels, tuple(dh.pool_scales), dh.dropout_ratio)
    assert (m["aux_channels"], ah.in_index, ah.num_convs, ah.concat_input) == (ah.channels, 2, 1, False)
    assert (dh.loss_decode.loss_weight, m["aux_weight"]) == (1.0, ah.loss_decode.loss_weight)
    ce_default = inspect.signature(MODELS.get("CrossEntropyLoss")).parameters["avg_non_ignore"].default
    for loss in (dh.loss_decode, ah.loss_decode):
        assert loss.get("avg_non_ignore", ce_default) is m["avg_non_ignore"] is False
    assert (t["mode"], (t["crop_size"],) * 2, (t["stride"],) * 2) == (cfg.model.test_cfg.mode,
                                                                      tuple(cfg.model.test_cfg.crop_size),
                                                                      tuple(cfg.model.test_cfg.stride))
    assert t["stride"] == 341
    assert (o["lr"], tuple(o["betas"]), o["weight_decay"]) == (cfg.optim_wrapper.optimizer.lr,
                                                               tuple(cfg.optim_wrapper.optimizer.betas),
                                                               cfg.optim_wrapper.optimizer.weight_decay)
    assert o["layer_decay"] == cfg.optim_wrapper.paramwise_cfg.layer_decay_rate and o["clip_grad"] is None
    warm, poly = cfg.param_scheduler
    assert (s["warmup_iters"], o["warmup_ratio"]) == (warm.end, warm.start_factor)
    assert (o["power"], o["min_lr"], s["iters"]) == (poly.power, poly.eta_min, poly.end) == (1.0, 0.0, 160000)
    assert s["iters"] == cfg.train_cfg.max_iters and s["batch_size"] == cfg.train_dataloader.batch_size == 2
    # the config's `fp16=` key is not read by mmengine; AMP would need AmpOptimWrapper: mmseg runs fp32
    assert cfg.optim_wrapper.type == "OptimWrapper" and "fp16" in cfg
    train = {p.type: p for p in cfg.train_pipeline}
    assert (tuple(d["scale"]), tuple(d["ratio_range"])) == (tuple(train["RandomResize"].scale),
                                                            tuple(train["RandomResize"].ratio_range))
    assert d["cat_max_ratio"] == train["RandomCrop"].cat_max_ratio and d["flip_prob"] == train["RandomFlip"].prob
    assert tuple(d["test_scale"]) == tuple({p.type: p for p in cfg.test_pipeline}["Resize"].scale)


def test_param_groups_equal_mmseg_layer_decay_constructor(built):
    """Every parameter's lr scale and weight decay as mmseg's own LayerDecayOptimizerConstructor (the config's
    `optim_wrapper`) builds them for its EncoderDecoder. mmseg 1.2.2 exempts `pos_embed` / `cls_token` by comparing
    the full name (`backbone.pos_embed`) with the bare one, which never matches: it decays them, and so do we."""
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS
    from transfer.segmentation.export import segmenter_to_mmseg
    ours, theirs, cfg = built
    wrapper_cfg = copy.deepcopy(mae_config().optim_wrapper)
    paramwise = wrapper_cfg.pop("paramwise_cfg")
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(type=wrapper_cfg.pop("constructor"),
                                                        optim_wrapper_cfg=wrapper_cfg, paramwise_cfg=paramwise))
    wrapper = constructor(theirs)
    mmseg_rule = {name: (g["lr_scale"], g["weight_decay"]) for g in wrapper.optimizer.param_groups
                  for name in g["param_names"]}
    o = cfg["optim"]
    groups = ours.param_groups(o["weight_decay"], o["layer_decay"])
    names = {id(p): n for n, p in ours.named_parameters()}
    our_rule = segmenter_to_mmseg({names[id(p)]: (g["lr_scale"], g["weight_decay"])
                                   for g in groups for p in g["params"]})
    assert set(our_rule) == set(mmseg_rule) == {n for n, p in theirs.named_parameters() if p.requires_grad}
    for name, (scale, wd) in mmseg_rule.items():
        assert our_rule[name][0] == pytest.approx(scale, rel=1e-12) and our_rule[name][1] == wd, name
    # the two tokens are decayed at the stem's scale (the point where mmseg's rule differs from its intent)
    assert mmseg_rule["backbone.pos_embed"] == mmseg_rule["backbone.cls_token"] == (0.65 ** 13, 0.05)
