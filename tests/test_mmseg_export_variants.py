"""`mae-bench export --to mmseg` for variant encoders, checked against mmsegmentation 1.2.2's own backbones: a
DINOv2 release (layer scale, patch 14; tests/reference/dinov2_vit.py), an iBOT backbone (tests/reference/ibot_vit.py)
and timm layer-scale ViTs (no qkv bias; no_embed_class) go to mmseg's `MAE` with their gammas, unilm's
BEiT fine-tuned release (no pos_embed, per-block tables) to mmseg's `BEiT` (qv_bias=True), BEiT v2's pretraining
release (pos_embed beside a shared table) to mmseg's `MAE` with qkv bias (q_bias, 0, v_bias); the file states the
backbone and its settings, mmseg's class built with them takes the file with every key used, and its feature maps
equal our segmentation backbone's to 1e-5. A segmenter trained on a BEiT encoder is written whole for mmseg's
EncoderDecoder (same logits). What neither backbone computes is one error line and no file."""
from functools import partial

import pytest
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from benchmarks.cli import main
from tests.mmseg_oracle import import_mmseg
from tests.reference import beit_vit, dinov2_vit, ibot_vit
from tests.test_formats_beit import randomize
from transfer.encoder import init_encoder
from transfer.segmentation.backbone import ViTBackbone

mmseg = import_mmseg()
if mmseg is None:
    pytest.skip("mmsegmentation / mmcv-lite not installed: pip install -e '.[dev,interop]'", allow_module_level=True)

from mmseg.models.backbones import BEiT, MAE  # noqa: E402

W, HEADS, DEPTH, K = 32, 2, 4, 3
OUT = (0, 1, 2, 3)
LN = partial(nn.LayerNorm, eps=1e-6)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()


def export(ckpt, out, capsys) -> tuple[dict, dict, str]:
    """(tensors, meta, the printed mmseg line) of `export --to mmseg` through the CLI."""
    capsys.readouterr()
    assert main(["export", "--to", "mmseg", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("mmseg ")]
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {"state_dict", "meta"}  # mmengine's checkpoint layout
    return saved["state_dict"], saved["meta"], line[0]


def mmseg_backbone(meta: dict, path):
    """mmseg's backbone class the file names, built with its settings and loaded as mmseg's configs do
    (init_cfg Pretrained -> init_weights)."""
    cls = {"MAE": MAE, "BEiT": BEiT}[meta["mmseg_backbone"]]
    model = cls(**meta["settings"], out_indices=OUT, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    model.init_weights()
    model.eval()  # mmseg's BEiT.train returns None
    return model


def check_keys(model: nn.Module, sd: dict, filled: set) -> None:
    """Every exported key is one of the backbone's (but the pretrained final norm, which mmseg's backbones with
    final_norm=False do not have, as our ViTBackbone feeds the neck un-normed maps); missing only `filled`."""
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert set(unexpected) == {"norm.weight", "norm.bias"}
    assert set(missing) == filled


def index_buffers(depth: int = DEPTH) -> set:
    return {f"layers.{i}.attn.relative_position_index" for i in range(depth)}  # mmseg's persistent buffers


def ours(path, size: int) -> ViTBackbone:
    vit, _ = init_encoder(str(path), arch=None, img_size=size, num_classes=0, global_pool=None)
    vit.norm = nn.Identity()
    return ViTBackbone(vit, OUT).eval()


def same_maps(a: nn.Module, b: nn.Module, size: int) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mine, theirs = a(x), b(x)
    assert len(mine) == len(theirs) == 4
    for m, t in zip(mine, theirs):
        close(m, t)


def test_dinov2_layer_scale_goes_to_mmseg_mae_with_its_gammas(tmp_path, capsys):
    # one head: the dinov2 format's convention (64-wide heads, at least one) for a 32-wide encoder
    ref = randomize(dinov2_vit.DinoVisionTransformer(img_size=56, patch_size=14, embed_dim=W, depth=DEPTH,
                                                     num_heads=1, init_values=1.0, ffn_layer="mlp"))
    torch.save(ref.state_dict(), tmp_path / "dinov2_vits14_pretrain.pth")
    sd, meta, line = export(tmp_path / "dinov2_vits14_pretrain.pth", tmp_path / "enc.pth", capsys)
    assert meta["mmseg_backbone"] == "MAE" and "type='MAE'" in line and "patch_size=14" in line
    assert "not by the release's own rule" in line  # DINOv2 resamples pos_embed with its 0.1 offset; mmseg does not
    assert meta["settings"] == dict(img_size=56, patch_size=14, in_channels=3, embed_dims=W, num_layers=DEPTH,
                                    num_heads=1, mlp_ratio=4, init_values=1.0, norm_cfg=dict(type="LN", eps=1e-6))
    torch.testing.assert_close(sd["layers.3.gamma_2"], ref.blocks[3].ls2.gamma.detach(), rtol=0, atol=0)
    theirs = mmseg_backbone(meta, tmp_path / "enc.pth")
    # mmseg's MAE layers own a zero-initialised relative position table (not in a DINOv2 encoder)
    check_keys(theirs, sd, index_buffers() | {f"layers.{i}.attn.relative_position_bias_table" for i in range(DEPTH)})
    assert all(float(t.abs().max()) == 0 for n, t in theirs.named_parameters() if "relative_position" in n)
    same_maps(ours(tmp_path / "dinov2_vits14_pretrain.pth", 56), theirs, 56)


def test_ibot_gammas_go_to_mmseg_mae(tmp_path, capsys):
    # one head: the format's 64-wide-head convention for a 32-wide encoder
    ref = randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=8, embed_dim=W, depth=DEPTH, num_heads=1,
                                               qkv_bias=True, init_values=0.1, masked_im_modeling=True))
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "checkpoint_teacher.pth")
    sd, meta, _ = export(tmp_path / "checkpoint_teacher.pth", tmp_path / "enc.pth", capsys)
    assert meta["mmseg_backbone"] == "MAE" and meta["settings"]["num_heads"] == 1
    torch.testing.assert_close(sd["layers.2.gamma_1"], ref.blocks[2].gamma_1.detach(), rtol=0, atol=0)
    theirs = mmseg_backbone(meta, tmp_path / "enc.pth")
    check_keys(theirs, sd, index_buffers() | {f"layers.{i}.attn.relative_position_bias_table" for i in range(DEPTH)})
    same_maps(ours(tmp_path / "checkpoint_teacher.pth", 32), theirs, 32)


@pytest.mark.parametrize("kw", [dict(qkv_bias=False), dict(no_embed_class=True)])
def test_timm_layer_scale_goes_to_mmseg_mae(tmp_path, capsys, kw):
    """timm's init_values (DeiT III's layer scale), with qkv_bias=False (mmseg's MAE layers always have a qkv bias:
    zeros compute the same) or no_embed_class (the class token has no position: a zero slot)."""
    ref = randomize(VisionTransformer(img_size=32, patch_size=8, embed_dim=W, depth=DEPTH, num_heads=HEADS,
                                      num_classes=0, init_values=0.1, **kw))
    torch.save(ref.state_dict(), tmp_path / "vit.pth")
    sd, meta, _ = export(tmp_path / "vit.pth", tmp_path / "enc.pth", capsys)
    assert meta["mmseg_backbone"] == "MAE" and meta["settings"]["img_size"] == 32
    if "qkv_bias" in kw:
        assert float(sd["layers.0.attn.qkv.bias"].abs().max()) == 0
    else:
        assert sd["pos_embed"].shape == (1, 17, W) and float(sd["pos_embed"][0, 0].abs().max()) == 0
    torch.testing.assert_close(sd["layers.1.gamma_1"], ref.blocks[1].ls1.gamma.detach(), rtol=0, atol=0)
    theirs = mmseg_backbone(meta, tmp_path / "enc.pth")
    check_keys(theirs, sd, index_buffers() | {f"layers.{i}.attn.relative_position_bias_table" for i in range(DEPTH)})
    same_maps(ours(tmp_path / "vit.pth", 32), theirs, 32)


def _beit_finetuned(tmp_path):
    ref = randomize(beit_vit.VisionTransformer(img_size=32, patch_size=8, embed_dim=W, depth=DEPTH, num_heads=HEADS,
                                               qkv_bias=True, norm_layer=LN, num_classes=10, use_abs_pos_emb=False,
                                               use_rel_pos_bias=True, init_values=0.1, use_mean_pooling=False))
    path = tmp_path / "beit_base_patch16_224_pt22k_ft22k.pth"
    torch.save({"model": ref.state_dict()}, path)
    return ref, path


def test_beit_release_goes_to_mmseg_beit(tmp_path, capsys):
    ref, path = _beit_finetuned(tmp_path)
    sd, meta, line = export(path, tmp_path / "enc.pth", capsys)
    assert meta["mmseg_backbone"] == "BEiT" and meta["settings"]["qv_bias"] is True
    assert "type='BEiT'" in line and "qv_bias=True" in line and "img_size 32" in line  # the tables' window
    assert "pos_embed" not in sd and "layers.0.attn.q_bias" in sd and "layers.0.attn.qkv.bias" not in sd
    torch.testing.assert_close(sd["layers.2.attn.relative_position_bias_table"],
                               ref.blocks[2].attn.relative_position_bias_table.detach(), rtol=0, atol=0)
    theirs = mmseg_backbone(meta, tmp_path / "enc.pth")
    check_keys(theirs, sd, index_buffers())
    same_maps(ours(path, 32), theirs, 32)


def test_beit_v2_with_pos_embed_goes_to_mmseg_mae_with_a_zero_k_bias(tmp_path, capsys):
    ref = randomize(beit_vit.VisionTransformerForMaskedImageModeling(
        img_size=32, patch_size=8, vocab_size=16, embed_dim=W, depth=DEPTH, num_heads=HEADS, qkv_bias=True,
        norm_layer=LN, init_values=0.1, use_abs_pos_emb=True, use_shared_rel_pos_bias=True))
    path = tmp_path / "beitv2_base_patch16_224_pt1k.pth"
    torch.save({"model": ref.state_dict()}, path)
    sd, meta, _ = export(path, tmp_path / "e.pth", capsys)
    assert meta["mmseg_backbone"] == "MAE" and "qv_bias" not in meta["settings"]
    bias = sd["layers.1.attn.qkv.bias"]
    q, v = ref.blocks[1].attn.q_bias.detach(), ref.blocks[1].attn.v_bias.detach()
    torch.testing.assert_close(bias, torch.cat((q, torch.zeros_like(q), v)), rtol=0, atol=0)
    theirs = mmseg_backbone(meta, tmp_path / "e.pth")
    check_keys(theirs, sd, index_buffers())  # the shared table was copied into every layer
    same_maps(ours(path, 32), theirs, 32)


def test_safetensors_carry_the_backbone_and_settings(tmp_path, capsys):
    import json
    from safetensors import safe_open
    _, path = _beit_finetuned(tmp_path)
    assert main(["export", "--to", "mmseg", "--ckpt", str(path), "--out", str(tmp_path / "enc.safetensors")]) == 0
    with safe_open(str(tmp_path / "enc.safetensors"), "pt") as f:
        meta = f.metadata()
        assert "layers.3.gamma_1" in f.keys()  # noqa: SIM118 (safe_open has no __contains__)
    assert meta["mmseg_backbone"] == "BEiT" and json.loads(meta["settings"])["qv_bias"] is True


def test_a_segmenter_trained_on_beit_is_written_whole_for_mmseg(tmp_path, capsys):
    from mmengine.runner import load_checkpoint
    from mmseg.registry import MODELS

    from benchmarks.config import load_recipe, parse_overrides, resolved
    from mae_core.checkpoint import save_checkpoint
    from tests.mmseg_oracle import mae_config
    from tests.test_mmseg_parity import BN, _close, _metas, _randomise
    from transfer.segmentation.train import build_segmenter
    _, path = _beit_finetuned(tmp_path)
    cfg = resolved(load_recipe("ade20k_seg", "paper", parse_overrides(
        ["model.img_size=32", "model.channels=16", "model.aux_channels=8", "model.drop_path=0.0",
         "model.dropout=0.0", "model.out_indices=[0,1,2,3]"])))
    seg, info = build_segmenter(cfg["model"], 32, str(path), None, K)
    _randomise(seg)
    save_checkpoint(tmp_path / "model_final.pth", seg.state_dict(), epoch=0,
                    config={"task": "ade20k_seg", "arch": info["arch"], "num_classes": K, "init": info, "recipe": cfg})
    sd, meta, line = export(tmp_path / "model_final.pth", tmp_path / "seg.pth", capsys)
    assert meta["mmseg_backbone"] == "BEiT" and line.startswith("mmseg EncoderDecoder with backbone: type='BEiT'")
    model = mae_config().model
    model.backbone = dict(type="BEiT", **meta["settings"], out_indices=list(OUT))
    model.neck.update(embed_dim=W, norm_cfg=BN)
    model.decode_head.update(in_channels=[W] * 4, channels=16, num_classes=K, norm_cfg=BN, dropout_ratio=0.0)
    model.auxiliary_head.update(in_channels=W, channels=8, num_classes=K, norm_cfg=BN, dropout_ratio=0.0)
    theirs = MODELS.build(model)
    theirs.eval()
    index = {f"backbone.{k}" for k in index_buffers()}
    assert set(sd) == set(theirs.state_dict()) - index
    load_checkpoint(theirs, str(tmp_path / "seg.pth"), map_location="cpu", strict=False)
    seg.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _close(seg.predict_logits(x, "whole"), theirs.encode_decode(x, _metas(32, 32)))


@pytest.mark.parametrize("kw, words", [
    (dict(reg_tokens=2, init_values=0.1), "2 register tokens"),
    (dict(class_token=False, global_pool="avg"), "no class token"),
    (dict(mlp_ratio=2.5), "MLP ratio 2.5"),
    (dict(reg_tokens=1, no_embed_class=True), "1 register tokens"),
])
def test_what_mmseg_cannot_compute_is_one_line_and_no_file(tmp_path, capsys, kw, words):
    ref = VisionTransformer(img_size=32, patch_size=8, embed_dim=W, depth=DEPTH, num_heads=HEADS, num_classes=0, **kw)
    torch.save(ref.state_dict(), tmp_path / "vit.pth")
    capsys.readouterr()
    assert main(["export", "--to", "mmseg", "--ckpt", str(tmp_path / "vit.pth"), "--out", str(tmp_path / "o.pth")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "mmseg export" in err
    assert not (tmp_path / "o.pth").exists()
