"""coco_det parts: the ViTDet backbone, the data pipeline, the COCO evaluator, layer decay and the export."""
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from timm.models.vision_transformer_sam import get_rel_pos, window_partition, window_unpartition

from mae_core.errors import MaeBenchError
from transfer.detection.backbone import SimpleFeaturePyramid, ViT, global_block_indexes
from transfer.detection.data import CocoInstances, load_coco, resolve_root
from transfer.detection.evaluate import coco_eval
from transfer.detection.model import vitdet_layer_id

TINY_VIT = dict(patch_size=16, embed_dim=32, depth=4, num_heads=2)


def _pair(img_size, use_rel_pos, window):
    """Two ViTs with the same weights: all blocks global vs all blocks windowed."""
    kw = dict(TINY_VIT, img_size=img_size, pretrain_img_size=32, use_rel_pos=use_rel_pos)
    glob = ViT(**kw, window_size=window, window_block_indexes=[]).eval()
    win = ViT(**kw, window_size=window, window_block_indexes=list(range(4))).eval()
    if use_rel_pos:  # non-zero tables so the bias matters
        for p in glob.parameters():
            if p.ndim == 2 and p.shape[0] == 2 * (img_size // 16) - 1:
                torch.nn.init.normal_(p, std=0.5)
    win.load_state_dict(glob.state_dict())
    return glob, win


@pytest.mark.parametrize("use_rel_pos", [False, True])
def test_window_attention_over_whole_grid_equals_global(use_rel_pos):
    glob, win = _pair(64, use_rel_pos, window=4)  # 64 px -> a 4 x 4 grid, one window
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(win(x), glob(x), rtol=1e-4, atol=1e-5)


def test_windowed_attention_stays_inside_windows():
    from transfer.detection.backbone import Block
    blk = Block(32, 2, window_size=2, use_rel_pos=True).eval()
    torch.nn.init.normal_(blk.attn.rel_pos_h, std=0.5)
    x = torch.randn(1, 4, 4, 32)
    y = x.clone()
    y[0, 0, 0] += 3 * torch.randn(32)  # a token of the top-left window
    diff = (blk(x) - blk(y)).abs().sum(-1)[0]
    assert diff[:2, :2].gt(1e-4).all()  # its own window sees the change
    diff[:2, :2] = 0
    assert diff.max() < 1e-5  # no other window does


def test_window_partition_round_trip_with_padding():
    x = torch.randn(2, 5, 7, 3)
    windows, padded = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 3, 3, 3) and padded == (6, 9)
    torch.testing.assert_close(window_unpartition(windows, 3, (5, 7), padded), x)
    assert windows[1, 0, 0].equal(x[0, 0, 3])  # row-major windows


def test_relative_positions_index_the_table_by_offset():
    table = torch.arange(7.0)[:, None].repeat(1, 2)  # entry d holds offset d - 3
    r = get_rel_pos(4, 4, table)
    i, j = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    torch.testing.assert_close(r[..., 0], (i - j + 3).float())
    assert get_rel_pos(6, 6, table).shape == (6, 6, 2)  # another grid: the table is resampled


def test_global_blocks_are_evenly_spaced():
    assert global_block_indexes(12) == [2, 5, 8, 11]
    assert global_block_indexes(24) == [5, 11, 17, 23]
    assert global_block_indexes(32) == [7, 15, 23, 31]


@pytest.mark.parametrize("hw", [(64, 64), (128, 96), (96, 160)])
def test_feature_pyramid_strides_and_channels(hw):
    fpn = SimpleFeaturePyramid(ViT(**TINY_VIT, img_size=64, pretrain_img_size=32, window_size=2), out_channels=24).eval()
    feats = fpn(torch.randn(1, 3, *hw))
    assert list(feats) == ["p2", "p3", "p4", "p5", "p6"]
    for name, stride in zip(feats, (4, 8, 16, 32, 64)):
        assert fpn.strides[name] == stride
        assert feats[name].shape == (1, 24, -(-hw[0] // stride), -(-hw[1] // stride)), name


def test_position_embedding_is_resized_to_the_input_grid():
    vit = ViT(**TINY_VIT, img_size=64, pretrain_img_size=32, window_size=0).eval()
    assert vit.pos_embed.shape == (1, 1 + 4, 32)  # kept at the pretraining grid, with the cls slot
    assert vit(torch.randn(1, 3, 96, 64)).shape == (1, 32, 6, 4)


def test_layer_decay_follows_vitdet():
    def rate(name):  # get_vit_lr_decay_rate: decay ** (num_layers + 1 - layer_id), 12 blocks, decay 0.7
        return 0.7 ** (12 + 1 - vitdet_layer_id(name, 12))
    assert rate("backbone.net.pos_embed") == pytest.approx(0.7 ** 13)
    assert rate("backbone.net.patch_embed.proj.weight") == pytest.approx(0.7 ** 13)
    assert rate("backbone.net.blocks.0.attn.qkv.weight") == pytest.approx(0.7 ** 12)
    assert rate("backbone.net.blocks.11.mlp.fc2.bias") == pytest.approx(0.7)
    assert rate("backbone.stages.0.0.weight") == 1.0
    assert rate("roi_heads.box_head.0.0.weight") == 1.0


# ---- data -----------------------------------------------------------------------------


def test_lsj_gives_square_crops_with_boxes_matching_masks(synth_root):
    root, name = resolve_root(synth_root)
    assert name == "synthetic-coco"
    ds = CocoInstances(root, "train2017", train=True, img_size=48, subset=6)
    assert len(ds) == 6
    for i in range(len(ds)):
        img, t = ds[i]
        assert img.shape == (3, 48, 48) and 0 <= img.min() and img.max() <= 1
        assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"])
        for box, mask in zip(t["boxes"], t["masks"].masks):  # the synthetic scenes' masks are RLE: bitmaps
            assert mask.shape == (48, 48)
            ys, xs = torch.nonzero(mask, as_tuple=True)  # the box is the mask's tight box (recompute_boxes)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    a, b = ds[0], ds[0]
    assert a[0].equal(b[0])  # draws come from (seed, epoch, index)
    ds.set_epoch(1)
    assert not ds[0][0].equal(a[0])


def _write_coco(root, images, anns, split="train2017"):
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(exist_ok=True)
    cats = [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]
    (root / "annotations" / f"instances_{split}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))


def _ann(i, img, cat=3, crowd=0, box=(2, 2, 10, 10)):
    m = np.zeros((32, 32), np.uint8)
    x, y, w, h = box
    m[y:y + h, x:x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"id": i, "image_id": img, "category_id": cat, "bbox": list(box), "area": float(w * h), "iscrowd": crowd,
            "segmentation": {"size": [32, 32], "counts": rle["counts"].decode()}}


def test_bad_files_are_counted_skips_or_one_clear_error(tmp_path):
    from PIL import Image
    images = [{"id": k, "file_name": f"{k}.png", "width": 32, "height": 32} for k in (1, 2, 3, 4)]
    poly = dict(_ann(6, 1, cat=7), segmentation=[[2, 2, 12, 2, 12, 12, 2, 12], [1, 1, 2, 2]])  # one part too short
    anns = [_ann(1, 1), _ann(2, 1, cat=7, crowd=1), _ann(3, 2, crowd=1), _ann(4, 3, cat=99), _ann(5, 4), poly]
    _write_coco(tmp_path, images, anns)
    for k in (1, 2, 3):  # image 4's file is missing
        Image.new("RGB", (32, 32)).save(tmp_path / "train2017" / f"{k}.png")
    ds = CocoInstances(tmp_path, "train2017", train=True, img_size=32, scale_range=(1.0, 1.0), flip=False)
    assert ds.ids == [1]  # 2: only a crowd region, 3: only a malformed annotation, 4: no file
    assert ds.skipped == {"missing_file": 1, "malformed_annotation": 1, "no_instances": 2}
    assert ds.label_of == {3: 1, 7: 2}
    _, t = ds[0]
    assert t["labels"].tolist() == [1, 2]  # the crowd annotation is not a training target
    torch.testing.assert_close(t["boxes"], torch.tensor([[2.0, 2.0, 12.0, 12.0]] * 2))
    assert torch.is_tensor(t["masks"].masks[0]) and t["masks"].masks[0].sum() == 100  # RLE: a bitmap
    (part,) = t["masks"].masks[1]  # the polygon kept its valid part (its vertices, in shapely's order)
    assert sorted(map(tuple, part.reshape(-1, 2).tolist())) == [(2, 2), (2, 12), (12, 2), (12, 12)]
    with pytest.raises(MaeBenchError, match="annotation 4 of image 3 is malformed"):
        CocoInstances(tmp_path, "train2017", train=True, img_size=32, strict=True)
    (tmp_path / "train2017" / "1.png").write_bytes(b"not a png")
    assert ds[0] is None  # an unreadable image is dropped by the collate, not a crash
    (tmp_path / "annotations" / "instances_train2017.json").write_text('{"images": [')
    with pytest.raises(MaeBenchError, match="cannot read COCO annotations"):
        load_coco(tmp_path / "annotations" / "instances_train2017.json")
    (tmp_path / "annotations" / "instances_train2017.json").write_text('{"images": []}')
    with pytest.raises(MaeBenchError, match="not a COCO instances file"):
        load_coco(tmp_path / "annotations" / "instances_train2017.json")


# ---- evaluation ---------------------------------------------------------------------------


def _gt_as_results(coco, ids):
    out = []
    for a in coco.loadAnns(coco.getAnnIds(imgIds=ids)):
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]),
                    "score": 1.0, "segmentation": a["segmentation"]})
    return out


def test_evaluator_scores_ground_truth_100_and_shuffled_boxes_near_0(synth_root):
    root, _ = resolve_root(synth_root)
    coco = load_coco(root / "annotations" / "instances_val2017.json")
    ids = sorted(coco.imgs)
    perfect = coco_eval(coco, _gt_as_results(coco, ids), ids)
    assert perfect["bbox_AP"] == pytest.approx(100.0) and perfect["segm_AP"] == pytest.approx(100.0)
    assert {f"{t}_{m}" for t in ("bbox", "segm") for m in ("AP", "AP50", "AP75", "APs")} <= set(perfect)
    assert all(v == pytest.approx(100.0) for v in perfect.values())
    assert "bbox_APl" not in perfect  # no object of 96^2 pixels in 32 px scenes: undefined, left out
    rng = np.random.default_rng(0)
    shuffled = _gt_as_results(coco, ids)
    others = [(r["bbox"], r["segmentation"]) for r in shuffled]
    order = rng.permutation(len(others))
    for r, k in zip(shuffled, order):  # each detection gets another instance's box and mask, and a random image
        r["bbox"], r["segmentation"] = others[k]
        r["image_id"] = int(rng.choice(ids))
    bad = coco_eval(coco, shuffled, ids)
    assert bad["bbox_AP"] < 10 and bad["segm_AP"] < 10
    assert coco_eval(coco, [], ids)["bbox_AP"] == 0.0


# ---- export ----------------------------------------------------------------------------------


def test_detectron2_export_names_and_loads_strictly(tmp_path, tiny):
    from mae_core.checkpoint import save_checkpoint
    from transfer.detection.export import export_detectron2
    from transfer.detection.model import build_vitdet_vit, vit_from_init
    mae = tiny()
    ckpt = tmp_path / "mae.pth"
    save_checkpoint(ckpt, mae.state_dict(), config={})
    m = dict(img_size=64, pretrain_img_size=32, drop_path=0.0, window_size=2, use_rel_pos=True)
    ours, _ = vit_from_init(str(ckpt), None, m)
    for suffix in (".pth", ".safetensors"):
        out = tmp_path / f"d2{suffix}"
        assert export_detectron2(ckpt, out) == "vit_tiny_patch16"
        if suffix == ".pth":
            sd = torch.load(out, weights_only=True)["model"]
        else:
            from safetensors.torch import load_file
            sd = load_file(out)
        expected = {f"backbone.net.{k}" for k in ours.state_dict() if ".rel_pos_" not in k}
        assert set(sd) == expected  # no matching heuristics needed
        assert sd["backbone.net.pos_embed"].shape == (1, 1 + 4, 192)  # kept at its pretraining grid
        vit = build_vitdet_vit(m, "vit_tiny_patch16").eval()
        missing, unexpected = vit.load_state_dict({k[len("backbone.net."):]: v for k, v in sd.items()}, strict=False)
        assert not unexpected and all(".rel_pos_" in k for k in missing)
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(vit(x), ours.eval()(x))
