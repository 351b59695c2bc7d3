"""coco_det against detectron2's ViTDet semantics, each written here from its published definition:
RoI pooling (fixed scales, ROIAlignV2, FPN level rule), L1 box losses and their normalisers, polygon mask
and box targets under LSJ, weight decay per parameter, ViT-H/14 at patch 16, pos_embed grids, EXIF."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torchvision.ops import roi_align

from transfer.detection.data import CocoInstances
from transfer.detection.masks import InstanceMasks, crop_polygons
from transfer.detection.model import RPN, build_detector, build_vitdet_vit, fast_rcnn_loss, param_groups, vit_from_init

M = dict(img_size=128, pretrain_img_size=64, drop_path=0.0, window_size=4, use_rel_pos=True, fpn_channels=16,
         anchor_sizes=(16, 32, 64, 128, 256), head_channels=16, box_convs=1, box_fc=32, mask_convs=1,
         rpn=dict(pre_nms_train=200, pre_nms_test=100, post_nms_train=50, post_nms_test=40, batch_per_image=32),
         roi_batch_per_image=16, score_thresh=0.0, detections_per_image=10, head_init="detectron2")


def _detector(**kw):
    m = {**M, **kw}
    return build_detector(m, build_vitdet_vit(m, "vit_tiny_patch16"), num_classes=3)


def d2_level(box: torch.Tensor) -> int:
    """detectron2 assign_boxes_to_levels: floor(4 + log2(sqrt(area) / 224 + 1e-8)), clamped to p2..p5."""
    size = float(torch.sqrt((box[2] - box[0]) * (box[3] - box[1])))
    return int(min(max(np.floor(4 + np.log2(size / 224 + 1e-8)), 2), 5))


@pytest.mark.parametrize("pool", ["box_roi_pool", "mask_roi_pool"])
def test_rois_are_pooled_aligned_from_the_backbone_levels_when_the_first_image_is_not_square(pool):
    """COCO val2017's first image is 640 x 426: torchvision's MultiScaleRoIAlign would infer scales 1/2..1/16
    from it and keep them. Every RoI must come from the level detectron2's rule picks, at 1 / stride, with
    RoIAlign aligned=True (ROIAlignV2)."""
    torch.manual_seed(0)
    model = _detector(img_size=256, anchor_sizes=(32, 64, 128, 256, 512)).eval()
    pooler = getattr(model.roi_heads, pool)
    seen = []
    pooler.register_forward_hook(lambda mod, args, out: seen.append((args, out)))
    with torch.no_grad():
        model([torch.rand(3, 170, 256)])  # 640 x 426 scaled to the 256 px test size, padded to 256 x 256
        model([torch.rand(3, 256, 192)])
        features = seen[0][0][0]  # and boxes of every level through the same pooler
        chosen = torch.tensor([[3.0, 5, 40, 30], [10, 20, 130, 140], [0, 0, 250, 210], [-100, -90, 400, 410]])
        pooler(features, [chosen], [(170, 256)])  # the hook records it
    assert len(seen) == 3
    for (features, boxes, _), pooled in seen:
        boxes = boxes[0]
        assert len(boxes) > 0
        levels = [d2_level(b) for b in boxes]
        size = pooled.shape[-1]
        for i, (box, k) in enumerate(zip(boxes, levels)):
            expected = roi_align(features[f"p{k}"], [box[None]], (size, size), spatial_scale=1 / 2 ** k,
                                 sampling_ratio=0, aligned=True)[0]
            torch.testing.assert_close(pooled[i], expected)
    assert levels == [2, 3, 4, 5]


def test_aligned_roi_align_samples_half_a_pixel_shifted():
    """ROIAlignV2 on one bin, by hand: a box [x0, x1] covers feature coordinates x0 * s - 0.5 .. x1 * s - 0.5,
    and each bin averages bilinear samples at the centres of its ceil(bin size) x ceil(bin size) sub-cells."""
    feat = torch.arange(64.0).reshape(1, 1, 8, 8) ** 1.5  # not linear, so a shift changes the value
    box = torch.tensor([[0.0, 4.0, 6.0, 22.0, 18.0]])  # at scale 1/4: x 0.5..5.0, y 1.0..4.0 after the shift
    scale, out = 0.25, 3
    got = roi_align(feat, box, (out, out), spatial_scale=scale, sampling_ratio=0, aligned=True)[0, 0]

    def bilinear(y, x):
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        ly, lx = y - y0, x - x0
        f = feat[0, 0].double()
        return ((1 - ly) * (1 - lx) * f[y0, x0] + (1 - ly) * lx * f[y0, x0 + 1]
                + ly * (1 - lx) * f[y0 + 1, x0] + ly * lx * f[y0 + 1, x0 + 1])

    x0, y0, x1, y1 = (box[0, 1:] * scale - 0.5).tolist()
    bw, bh = (x1 - x0) / out, (y1 - y0) / out
    gw, gh = int(np.ceil(bw)), int(np.ceil(bh))
    for i in range(out):
        for j in range(out):
            samples = [bilinear(y0 + i * bh + (a + 0.5) * bh / gh, x0 + j * bw + (b + 0.5) * bw / gw)
                       for a in range(gh) for b in range(gw)]
            assert float(got[i, j]) == pytest.approx(float(sum(samples) / len(samples)), rel=1e-5)


# ---- losses ------------------------------------------------------------------------------------


def test_rpn_losses_are_l1_and_bce_summed_over_sampled_anchors_over_batch_times_images():
    """detectron2 RPN.losses: smooth_l1(beta=0) = L1 summed over positive anchors, BCE summed over sampled
    anchors, both divided by batch_size_per_image x images (torchvision: smooth L1 beta 1/9 over the
    number actually sampled). Every labelled anchor is sampled here: 3 + 4 per image < 16."""
    rpn = _detector().rpn
    rpn.fg_bg_sampler.batch_size_per_image = 16
    g = torch.Generator().manual_seed(0)
    labels = [torch.tensor([1, 1, 0, 0, 0, -1, 1, 0, 0, -1], dtype=torch.float32),
              torch.tensor([0, -1, 1, 1, 0, 0, 1, 0, -1, -1], dtype=torch.float32)]
    targets = [torch.randn(10, 4, generator=g) for _ in labels]
    objectness, deltas = torch.randn(20, 1, generator=g), torch.randn(20, 4, generator=g)
    obj_loss, box_loss = rpn.compute_loss(objectness, deltas, labels, targets)
    y, t = torch.cat(labels), torch.cat(targets)
    pos, sampled = y == 1, y >= 0
    p = torch.sigmoid(objectness.flatten())
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    torch.testing.assert_close(box_loss, (deltas[pos] - t[pos]).abs().sum() / 32)
    torch.testing.assert_close(obj_loss, bce[sampled].sum() / 32)
    assert isinstance(rpn, RPN)


def test_box_head_loss_is_l1_on_the_true_class_over_all_sampled_rois():
    """detectron2 FastRCNNOutputLayers.losses: mean cross-entropy; L1 (smooth_l1_beta 0) of the ground-truth
    class's deltas of the foreground RoIs, summed and divided by the number of sampled RoIs."""
    g = torch.Generator().manual_seed(1)
    labels = [torch.tensor([0, 2, 1, 0]), torch.tensor([3, 0, 0])]
    targets = [torch.randn(4, 4, generator=g), torch.randn(3, 4, generator=g)]
    logits, deltas = torch.randn(7, 4, generator=g), torch.randn(7, 16, generator=g)
    loss_cls, loss_box = fast_rcnn_loss(logits, deltas, labels, targets)
    y, t = torch.cat(labels), torch.cat(targets)
    expected_cls = -torch.log_softmax(logits, 1)[torch.arange(7), y].mean()
    expected_box = sum((deltas[i, 4 * y[i]:4 * y[i] + 4] - t[i]).abs().sum() for i in range(7) if y[i] > 0) / 7
    torch.testing.assert_close(loss_cls, expected_cls)
    torch.testing.assert_close(loss_box, expected_box)


def test_a_training_step_returns_the_five_losses():
    torch.manual_seed(0)
    model = _detector().train()
    parts = [np.array([10.0, 10, 60, 12, 40, 70])]
    target = {"boxes": torch.tensor([[10.0, 10, 60, 70]]), "labels": torch.tensor([2]), "masks": InstanceMasks([parts])}
    losses = model([torch.rand(3, 128, 128)], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


# ---- mask and box targets -------------------------------------------------------------------------


def frpy(polys, h, w) -> np.ndarray:
    """pycocotools' rasterisation of flat polygons (detectron2 polygons_to_bitmask)."""
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in polys], h, w)))


def clip_convex(points, x0, y0, x1, y1):
    """Sutherland-Hodgman: a convex polygon ([(x, y)]) cut by the rectangle [x0, x1] x [y0, y1]."""
    def cut(pts, inside, cross):
        out = []
        for a, b in zip(pts, pts[1:] + pts[:1]):
            if inside(b):
                if not inside(a):
                    out.append(cross(a, b))
                out.append(b)
            elif inside(a):
                out.append(cross(a, b))
        return out

    def at_x(x):
        return lambda a, b: (x, a[1] + (b[1] - a[1]) * (x - a[0]) / (b[0] - a[0]))

    def at_y(y):
        return lambda a, b: (a[0] + (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]), y)

    pts = list(points)
    pts = cut(pts, lambda p: p[0] >= x0, at_x(x0))
    pts = cut(pts, lambda p: p[0] <= x1, at_x(x1))
    pts = cut(pts, lambda p: p[1] >= y0, at_y(y0))
    return cut(pts, lambda p: p[1] <= y1, at_y(y1))


def test_a_crop_cuts_polygons_and_the_box_is_recomputed_tight():
    """The triangle (0,0) (20,0) (0,20) cut to x >= 10 is (10,0) (20,0) (10,10): its tight box, shifted by the
    crop, is 0..10 x 0..10, not the clipped original box 0..10 x 0..20 (detectron2's recompute_boxes)."""
    (piece,) = crop_polygons([np.array([0.0, 0, 20, 0, 0, 20])], 10, 0, 30, 30)
    assert sorted(map(tuple, piece.reshape(-1, 2).tolist())) == [(0, 0), (0, 10), (10, 0)]
    torch.testing.assert_close(InstanceMasks([[piece]]).bounding_boxes(), torch.tensor([[0.0, 0, 10, 10]]))
    concave = np.array([0.0, 0, 30, 0, 30, 30, 20, 30, 20, 10, 10, 10, 10, 30, 0, 30])  # a U: two legs above y = 20
    legs = crop_polygons([concave], 0, 20, 40, 40)
    assert len(legs) == 2 and all(len(p) == 8 for p in legs)
    assert crop_polygons([np.array([0.0, 0, 5, 0, 0, 5])], 10, 10, 5, 5) == []  # outside: the part vanishes
    assert not InstanceMasks([[]]).nonempty().item()


def test_targets_from_lsj_equal_the_hand_transformed_polygon_rasterised_in_each_roi(tmp_path):
    """A 40 x 40 image with one triangle, LSJ to 32 px at scale 1.5 (48 px, so a 16 px crop range) with a flip:
    the target box and the 28 x 28 targets of several RoIs equal pycocotools on the polygon flipped, scaled
    and cut by hand (detectron2's PolygonMasks.crop_and_resize, hard targets)."""
    from PIL import Image
    tri = [(4.0, 6.0), (36.0, 10.0), (12.0, 38.0)]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "train2017").mkdir()
    Image.new("RGB", (40, 40), (90, 20, 200)).save(tmp_path / "train2017" / "1.png")
    ann = {"id": 1, "image_id": 1, "category_id": 5, "bbox": [4, 6, 32, 32], "area": 500.0, "iscrowd": 0,
           "segmentation": [[v for p in tri for v in p]]}
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "1.png", "width": 40, "height": 40}], "annotations": [ann],
         "categories": [{"id": 5, "name": "t"}]}))
    seen_crop = set()
    for seed in range(6):
        ds = CocoInstances(tmp_path, "train2017", train=True, img_size=32, seed=seed, scale_range=(1.5, 1.5))
        img, t = ds[0]
        assert img.shape == (3, 32, 32)
        rng = np.random.default_rng([seed, 0, 0])  # the draws, in LSJ's order: flip, scale, crop offset
        flip, _, u = rng.random() < 0.5, rng.uniform(1.5, 1.5), rng.uniform()
        off = float(round(16 * u))
        pts = [((40 - x) if flip else x, y) for x, y in tri]
        pts = [(x * 48 / 40, y * 48 / 40) for x, y in pts]
        pts = [(x - off, y - off) for x, y in clip_convex(pts, off, off, off + 32, off + 32)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        torch.testing.assert_close(t["boxes"], torch.tensor([[min(xs), min(ys), max(xs), max(ys)]]))
        seen_crop.add((flip, off))
        for roi in ([min(xs), min(ys), max(xs), max(ys)], [2.0, 3.0, 20.5, 30.0], [10.0, 0.0, 31.0, 9.0]):
            got = t["masks"].crop_and_resize(torch.tensor([0]), torch.tensor([roi]), 28)[0]
            w, h = roi[2] - roi[0], roi[3] - roi[1]
            poly = [v for x, y in pts for v in ((x - roi[0]) * 28 / w, (y - roi[1]) * 28 / h)]
            assert torch.equal(got, torch.from_numpy(frpy([poly], 28, 28).astype(bool)))
    assert len({f for f, _ in seen_crop}) == 2 and len({o for _, o in seen_crop}) > 2


def test_bitmap_targets_are_roi_aligned_and_thresholded():
    """RLE instances stay bitmaps (detectron2 BitMasks.crop_and_resize: ROIAlign aligned=True, >= 0.5)."""
    bitmap = torch.zeros(32, 32, dtype=torch.uint8)
    bitmap[8:16, 8:16] = 1
    masks = InstanceMasks([[np.array([0.0, 0, 4, 0, 4, 4])], bitmap])
    rois = torch.tensor([[8.0, 8, 16, 16], [8.0, 8, 24, 16], [4.0, 10, 20, 13]])
    got = masks.crop_and_resize(torch.tensor([1, 1, 1]), rois, 28)

    def inside(lo, hi):  # one bilinear sample per bin (bins under a pixel) at pixel coordinate c - 0.5
        c = lo + (np.arange(28) + 0.5) * (hi - lo) / 28 - 0.5
        return np.clip(np.minimum(c - 7, 16 - c), 0, 1)  # pixels 8..15 are set

    for roi, target in zip(rois.tolist(), got):
        expected = np.outer(inside(roi[1], roi[3]), inside(roi[0], roi[2])) >= 0.5
        assert np.array_equal(target.numpy(), expected)
    assert got[0][1:-1, 1:-1].all() and not got[0][0, 0]  # the square itself: only the corners fall below 0.5
    torch.testing.assert_close(masks.bounding_boxes()[1], torch.tensor([8.0, 8, 16, 16]))


# ---- optimisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("vit_h", [False, True])
def test_weight_decay_per_parameter_follows_detectron2(vit_h):
    """ViTDet B/L: get_default_optimizer_params(weight_decay_norm=0.0, overrides={"pos_embed": {wd 0}}): no
    decay on torch norm layers (the ViT's LayerNorms) and pos_embed; detectron2's own LayerNorm (pyramid,
    heads) and biases decay. ViT-H: weight_decay_norm=None and no override: everything decays."""
    model = _detector()
    kw = dict(weight_decay_norm=None, zero_decay=()) if vit_h else {}
    groups = param_groups(model, 0.1, 0.7, 12, **kw)
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(wd) == len(named)

    def rule(name):
        vit_norm = name.startswith("backbone.net.blocks.") and name.split(".")[4] in ("norm1", "norm2")
        return 0.1 if vit_h or not (vit_norm or name == "backbone.net.pos_embed") else 0.0

    for name, p in named.items():
        assert wd[id(p)] == rule(name), name
    assert sum(rule(n) == 0.0 for n in named) == (0 if vit_h else 1 + 4 * 12)
    assert any(".norm" in n or "stages.0.1" in n for n in named if n.startswith("backbone.stages"))


def test_detectron2_head_init():
    torch.manual_seed(0)
    heads = _detector(box_fc=256).roi_heads
    fc = heads.box_head[-2]  # convs, flatten, fc, relu
    assert isinstance(fc, torch.nn.Linear)
    bound = (3 / fc.in_features) ** 0.5  # c2_xavier_fill: kaiming_uniform(a=1)
    assert fc.weight.abs().max() <= bound and fc.weight.abs().max() > 0.9 * bound and not fc.bias.any()
    for layer, std in ((heads.box_predictor.cls_score, 0.01), (heads.box_predictor.bbox_pred, 0.001),
                       (heads.mask_predictor.mask_fcn_logits, 0.001)):
        assert layer.weight.std().item() == pytest.approx(std, rel=0.2) and not layer.bias.any()


# ---- ViT-H/14 --------------------------------------------------------------------------------------


def test_a_patch14_encoder_runs_at_patch16_with_strides_4_to_32(tmp_path):
    """ViTDet's ViT-H/14: the patch-embedding kernel bicubically resized 14 -> 16 and pos_embed to the patch-16
    grid of the pretraining size (224/16 = 14 for ViT-H; 112/16 = 7 here), so the pyramid is p2..p6."""
    from mae_core.checkpoint import save_checkpoint
    from mae_core.models import create_mae
    from transfer.detection.backbone import SimpleFeaturePyramid
    from transfer.detection.export import detectron2_state_dict
    mae = create_mae("vit_tiny_patch14", img_size=112, decoder_depth=1, decoder_embed_dim=32, decoder_num_heads=2)
    ckpt = tmp_path / "p14.pth"
    save_checkpoint(ckpt, mae.state_dict(), config={})
    m = {**M, "pretrain_img_size": 112}
    vit, info = vit_from_init(str(ckpt), None, m)
    assert info["arch"] == "vit_tiny_patch14" and vit.patch_size == 16
    w = mae.state_dict()["patch_embed.proj.weight"]
    torch.testing.assert_close(vit.patch_embed.proj.weight, F.interpolate(w, size=(16, 16), mode="bicubic",
                                                                            align_corners=False))
    pe = mae.state_dict()["pos_embed"]  # [1, 1 + 8 * 8, C]
    grid = pe[:, 1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 49, -1)
    torch.testing.assert_close(vit.pos_embed[:, 1:], expected)
    torch.testing.assert_close(vit.pos_embed[:, :1], pe[:, :1])
    fpn = SimpleFeaturePyramid(vit, out_channels=8).eval()
    assert fpn.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    feats = fpn(torch.randn(1, 3, 128, 128))
    assert [f.shape[-1] for f in feats.values()] == [32, 16, 8, 4, 2]
    sd, _ = detectron2_state_dict(ckpt)  # what detectron2's ViT-H config loads
    assert sd["backbone.net.patch_embed.proj.weight"].shape[-2:] == (16, 16)
    assert sd["backbone.net.pos_embed"].shape == (1, 50, 192)
    scratch, _ = vit_from_init("scratch", "vit_tiny_patch14", m)
    assert scratch.patch_size == 16


def test_a_patch8_encoder_keeps_its_grid_and_its_tokens_on_an_upsampled_image(tmp_path):
    """Small-scale ViT/8 (no reference): the kernel resized 8 -> 16 by the pseudo-inverse rule, so on an image
    upsampled 2x (the bicubic resize the rule inverts) every token equals the 8 x 8 kernel's on the original;
    pos_embed keeps the 8 x 8 grid of a 64 px pretraining, i.e. ViTDet's pretrain_img_size becomes 128."""
    from mae_core.checkpoint import save_checkpoint
    from mae_core.models import create_mae
    from transfer.detection.export import detectron2_state_dict
    mae = create_mae("vit_tiny_patch8", img_size=64, decoder_depth=1, decoder_embed_dim=32, decoder_num_heads=2)
    ckpt = tmp_path / "p8.pth"
    save_checkpoint(ckpt, mae.state_dict(), config={})
    vit, info = vit_from_init(str(ckpt), None, {**M, "pretrain_img_size": 64})
    assert info["arch"] == "vit_tiny_patch8" and vit.patch_size == 16
    torch.testing.assert_close(vit.pos_embed, mae.state_dict()["pos_embed"])  # the 8 x 8 grid, untouched
    w8, w16, b = mae.patch_embed.proj.weight, vit.patch_embed.proj.weight, mae.patch_embed.proj.bias
    patches = torch.randn(16, 3, 8, 8)  # exact per patch: each 8 x 8 patch upsampled on its own
    up = F.interpolate(patches, size=(16, 16), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(F.conv2d(up, w16, b), F.conv2d(patches, w8, b), atol=2e-4, rtol=1e-4)
    x = torch.randn(2, 3, 64, 64)  # whole images: close, where a bicubic kernel resize scales tokens by about 4
    x_up = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    base = F.conv2d(x, w8, stride=8).std()
    assert 0.8 < F.conv2d(x_up, w16, stride=16).std() / base < 1.25
    bicubic = F.interpolate(w8, size=(16, 16), mode="bicubic", align_corners=False)
    assert 3.0 < F.conv2d(x_up, bicubic, stride=16).std() / base < 5.0
    sd, exported = detectron2_state_dict(ckpt)
    assert exported["img_size"] == 128 and sd["backbone.net.pos_embed"].shape == (1, 65, 192)


# ---- shared helpers ---------------------------------------------------------------------------------


def test_pos_embed_is_resized_when_the_grid_shape_differs_even_with_the_same_count():
    from mae_core.pos_embed import resize_pos_embed
    pe = torch.randn(1, 1 + 14 * 14, 8)
    assert resize_pos_embed(pe, (14, 14)) is pe
    got = resize_pos_embed(pe, (7, 28))  # 196 positions, another grid
    grid = pe[:, 1:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(7, 28), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(got[:, 1:], expected.reshape(1, 196, 8))
    torch.testing.assert_close(got[:, :1], pe[:, :1])


def test_exif_orientation_is_applied_for_coco_images(tmp_path):
    """A JPEG stored 40 wide x 20 high with EXIF orientation 6 (rotate 90 degrees clockwise to display) is
    20 x 40 upright, as COCO's width/height and boxes describe it (detectron2's read_image applies EXIF)."""
    from PIL import Image
    from mae_core.images import open_rgb
    rng = np.random.default_rng(0)
    stored = Image.fromarray(rng.integers(0, 255, (20, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "train2017" / "1.jpg"
    path.parent.mkdir()
    stored.save(path, exif=exif, quality=100)
    raw = np.asarray(open_rgb(path))
    assert raw.shape == (20, 40, 3)  # the default keeps the stored pixels (the official MAE ImageNet loader)
    upright = np.asarray(open_rgb(path, exif_transpose=True))
    assert np.array_equal(upright, np.rot90(raw, k=-1))
    (tmp_path / "annotations").mkdir()
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 30], "area": 300.0, "iscrowd": 0,
           "segmentation": [[2, 2, 12, 2, 12, 32, 2, 32]]}
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "1.jpg", "width": 20, "height": 40}], "annotations": [ann],
         "categories": [{"id": 1, "name": "a"}]}))
    val = CocoInstances(tmp_path, "train2017", train=False, img_size=40)
    assert val[0][0].shape == (3, 40, 20)
    train = CocoInstances(tmp_path, "train2017", train=True, img_size=40, scale_range=(1.0, 1.0), flip=False)
    img, t = train[0]  # the annotation's 20 x 40 matches the upright image: a sample, not a size mismatch
    torch.testing.assert_close(t["boxes"], torch.tensor([[2.0, 2.0, 12.0, 32.0]]))
