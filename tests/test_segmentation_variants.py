"""ade20k_seg (UperNet) on every encoder variant the checkpoint formats load: a tiny model built with the method's
own code (tests/reference: DINOv2's and unilm BEiT's model code; timm for DeiT and timm's variants), saved as the
release saves it and loaded through `--ckpt` into the segmenter, gives backbone maps equal to the reference's block
outputs with the extra tokens removed as the reference removes them (DINOv2's get_intermediate_layers, timm's
forward_intermediates, BEiT's semantic-segmentation backbone; and mmseg 1.2.2's BEiT backbone itself where it is
installed); the variant's own weights are used; layer decay counts its blocks; one ade20k_seg step runs on it."""
import pytest
import torch
from timm.models.beit import Beit
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from benchmarks.cli import main
from mae_core.errors import MaeBenchError
from results.record import read_result
from tests.reference import beit_vit, dinov2_vit
from tests.test_formats import randomize
from tests.test_formats_beit import LN
from tests.test_formats_beit import randomize as beit_randomize
from transfer.segmentation.backbone import RelPosAttention
from transfer.segmentation.train import build_segmenter

W, DEPTH, OUT = 64, 4, (0, 1, 2, 3)  # head dim 64 (the formats' convention): one head
CFG = dict(drop_path=0.0, out_indices=OUT, rel_pos_bias=False, layer_scale_init=1.0, channels=8, aux_channels=8,
           pool_scales=(1, 2), dropout=0.0, aux_weight=0.4)


def segmenter(path, crop: int, **kw):
    model, info = build_segmenter({**CFG, **kw}, crop, str(path), None, 3)
    return model.eval(), info


def images(size: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def maps(tokens: torch.Tensor, skip: int, grid: int) -> torch.Tensor:
    """[B, skip + grid^2, C] -> [B, C, grid, grid] without the first `skip` tokens."""
    return tokens[:, skip:].reshape(tokens.shape[0], grid, grid, -1).permute(0, 3, 1, 2)


def assert_maps(ours: list, ref: list) -> None:
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape, (a.shape, b.shape)
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()


def changes(model, x, name: str) -> bool:
    """Whether adding noise to parameter `name` changes the backbone's maps."""
    before = [m.clone() for m in model.backbone(x)]
    p = model.get_parameter(name)
    with torch.no_grad():
        p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    return any(not torch.allclose(a, b) for a, b in zip(before, model.backbone(x)))


# ---- DINOv2: registers, layer scale, SwiGLU, patch 14 ------------------------------------------------------------
def _dinov2(tmp_path, regs=4, ffn="mlp"):
    ref = randomize(dinov2_vit.DinoVisionTransformer(img_size=56, patch_size=14, embed_dim=W, depth=DEPTH, num_heads=1,
                                                     init_values=1.0, ffn_layer=ffn, num_register_tokens=regs))
    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(ref.state_dict(), path)  # hubconf: a flat DinoVisionTransformer state dict
    return ref, path


def dinov2_maps(ref, x: torch.Tensor) -> list:
    """dinov2's get_intermediate_layers(x, n=OUT, reshape=True, norm=False): each block's output without the class
    and register tokens (`out[:, 1 + self.num_register_tokens:]`), as [B, C, h, w]."""
    t, out = ref.prepare_tokens_with_masks(x), []
    for blk in ref.blocks:
        t = blk(t)
        out.append(maps(t, 1 + ref.num_register_tokens, x.shape[-1] // 14))
    return out


@pytest.mark.parametrize("regs, ffn", [(4, "mlp"), (0, "swiglufused")])
def test_dinov2_maps_equal_its_intermediate_layers(tmp_path, regs, ffn):
    ref, path = _dinov2(tmp_path, regs, ffn)
    x = images(42)  # a 3 x 3 grid: pos_embed resized from the release's 4 x 4 as DINOv2 resizes it
    with torch.no_grad():
        expected = dinov2_maps(ref, x)
        for rel in (False, True):  # the recipe's zero-initialised relative position bias starts as the identity
            model, info = segmenter(path, 42, rel_pos_bias=rel)
            assert_maps(model.backbone(x), expected)
    assert info["format"] == "dinov2" and info["arch_spec"]["reg_tokens"] == regs
    vit = model.backbone.vit
    assert torch.equal(vit.blocks[0].ls1.gamma, ref.blocks[0].ls1.gamma)  # the release's, not the recipe's 1.0
    assert changes(model, x, "backbone.vit.blocks.0.ls1.gamma")
    assert changes(model, x, "backbone.vit.blocks.1.attn.relative_position_bias_table")
    if regs:
        assert changes(model, x, "backbone.vit.reg_token")
        # the registers take the class token's three relative-position entries (they have no position either)
        attn = vit.blocks[1].attn
        bias = attn.bias((3, 3))
        assert bias.shape == (1, 1 + regs + 9, 1 + regs + 9)
        table = attn.relative_position_bias_table[:, 0]
        assert (bias[0, :1 + regs, 1 + regs:] == table[-3]).all() and (bias[0, 1 + regs:, :1 + regs] == table[-2]).all()
        assert (bias[0, :1 + regs, :1 + regs] == table[-1]).all()
    assert model.predict_logits(torch.randn(1, 3, 50, 38)).shape == (1, 3, 50, 38)  # padded to a multiple of 14


# ---- timm: DeiT's distillation token, no class token, layer scale ------------------------------------------------
# 48 px (3 x 3 patches): a 2 x 2 grid's pos_embed with 2 registers would also read as 1 x 1 plus 3 slots
_TIMM = {"deit_distilled": lambda: VisionTransformerDistilled(img_size=48, patch_size=16, embed_dim=W, depth=DEPTH,
                                                              num_heads=1, num_classes=10),
         "no_class_token": lambda: VisionTransformer(img_size=48, patch_size=16, embed_dim=W, depth=DEPTH, num_heads=1,
                                                     num_classes=0, class_token=False, global_pool="avg",
                                                     init_values=0.1),
         "deit3_registers": lambda: VisionTransformer(img_size=48, patch_size=16, embed_dim=W, depth=DEPTH, num_heads=1,
                                                      num_classes=0, init_values=0.1, reg_tokens=2,
                                                      no_embed_class=True),
         # a timm Beit without tables or layer scale: the recipe adds zero tables and gammas of 1 (the identity)
         "timm_beit_abs_pos": lambda: Beit(img_size=48, patch_size=16, embed_dim=W, depth=DEPTH, num_heads=1,
                                           num_classes=0, use_abs_pos_emb=True, use_rel_pos_bias=False)}


@pytest.mark.parametrize("name", sorted(_TIMM))
def test_timm_variant_maps_equal_timms_forward_intermediates(tmp_path, name):
    ref = randomize(_TIMM[name]())
    path = tmp_path / f"{name}.pth"
    torch.save({"model": ref.state_dict()} if name == "deit_distilled" else ref.state_dict(), path)
    model, info = segmenter(path, 48, rel_pos_bias=True)
    x = images(48)
    with torch.no_grad():  # timm drops its prefix tokens (class, distillation, registers) from the intermediates
        expected = ref.forward_intermediates(x, indices=list(OUT), norm=False, output_fmt="NCHW",
                                             intermediates_only=True)
        assert_maps(model.backbone(x), expected)
    assert model.backbone.prefix == ref.num_prefix_tokens
    assert info["format"] == {"deit_distilled": "deit", "timm_beit_abs_pos": "timm_beit"}.get(name, "timm")


# ---- BEiT: q / v biases, gamma_1 / gamma_2, per-block tables resized to the crop ---------------------------------
def _beit(tmp_path):
    """BEiT's pretraining model as its releases build it (shared table, layer scale, no absolute positions)."""
    ref = beit_randomize(beit_vit.VisionTransformerForMaskedImageModeling(
        img_size=32, patch_size=8, vocab_size=16, embed_dim=W, depth=DEPTH, num_heads=2, qkv_bias=True,
        norm_layer=LN, init_values=0.1, use_abs_pos_emb=False, use_shared_rel_pos_bias=True))
    path = tmp_path / "beit_base_patch16_224_pt22k.pth"
    torch.save({"model": ref.state_dict()}, path)
    return ref, path


def test_beit_maps_equal_beits_segmentation_backbone_at_a_new_grid(tmp_path):
    """unilm's model at the crop's grid, loaded as BEiT's fine-tuning loads a release (shared table into every block,
    tables resized by geometric-sequence interpolation, as beit/semantic_segmentation's checkpoint loading and
    mmseg's BEiT.resize_rel_pos_embed do); its backbone (beit/semantic_segmentation/backbone/beit.py) feeds the
    neck `x[:, 1:]` of the out_indices blocks."""
    pre, path = _beit(tmp_path)
    ref = beit_vit.VisionTransformer(img_size=48, patch_size=8, embed_dim=W, depth=DEPTH, num_heads=2, qkv_bias=True,
                                     norm_layer=LN, num_classes=0, init_values=0.1, use_abs_pos_emb=False,
                                     use_rel_pos_bias=True)
    ref.load_state_dict(beit_vit.prepare_checkpoint(ref, {k: v.clone() for k, v in pre.state_dict().items()}),
                        strict=False)
    x = images(48)
    model, info = segmenter(path, 48, rel_pos_bias=False, layer_scale_init=None)  # BEiT's own tables and gammas
    with torch.no_grad():
        assert_maps(model.backbone(x), [maps(t, 1, 6) for t in ref.eval().get_intermediate_layers(x)])
    assert info["format"] == "beit" and info["arch_spec"]["rel_pos_bias"]
    attn = model.backbone.vit.blocks[0].attn
    assert isinstance(attn, RelPosAttention) and attn.window == (6, 6)
    for name in ("blocks.0.gamma_1", "blocks.1.attn.q_bias", "blocks.1.attn.v_bias",
                 "blocks.2.attn.relative_position_bias_table"):
        assert changes(model, x, f"backbone.vit.{name}"), name
    assert model.predict_logits(torch.randn(1, 3, 40, 56)).shape == (1, 3, 40, 56)  # other grids: table resampled


def test_beit_maps_equal_mmseg_beit_backbone(tmp_path):
    """mmseg 1.2.2's own BEiT backbone (qv_bias, init_values, per-layer tables at the crop's window, `x[:, 1:]` of
    the out_indices layers), holding our loaded encoder in its names (tools/model_converters/beit2mmseg.py)."""
    from tests.mmseg_oracle import import_mmseg
    if import_mmseg() is None:
        pytest.skip("mmsegmentation / mmcv-lite not installed")
    from mmseg.registry import MODELS

    from transfer.segmentation.export import to_mmseg
    _, path = _beit(tmp_path)
    model, _ = segmenter(path, 48, rel_pos_bias=False, layer_scale_init=None)
    theirs = MODELS.build(dict(type="BEiT", img_size=(48, 48), patch_size=8, embed_dims=W, num_layers=DEPTH,
                               num_heads=2, mlp_ratio=4, qv_bias=True, init_values=0.1, drop_path_rate=0.0,
                               out_indices=OUT, norm_cfg=dict(type="LN", eps=1e-6)))
    sd = to_mmseg({k: v for k, v in model.backbone.vit.state_dict().items() if not k.startswith("norm.")})
    missing, unexpected = theirs.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("relative_position_index") for k in missing), (missing, unexpected)
    theirs.eval()
    x = images(48)
    with torch.no_grad():
        assert_maps(model.backbone(x), list(theirs(x)))


# ---- layer decay -------------------------------------------------------------------------------------------------
def test_layer_decay_counts_the_variants_blocks(tmp_path):
    _, dv2 = _dinov2(tmp_path)
    _, beit = _beit(tmp_path)
    for path, crop, names in ((dv2, 42, {"backbone.vit.reg_token": 0, "backbone.vit.blocks.3.ls2.gamma": 4,
                                         "backbone.vit.blocks.0.attn.relative_position_bias_table": 1}),
                              (beit, 32, {"backbone.vit.blocks.2.attn.q_bias": 3, "backbone.vit.blocks.3.gamma_2": 4,
                                          "backbone.vit.blocks.1.attn.relative_position_bias_table": 2})):
        model, _ = segmenter(path, crop, rel_pos_bias=True)
        assert model.backbone.depth == DEPTH
        scale = {id(p): g["lr_scale"] for g in model.param_groups(0.05, 0.5) for p in g["params"]}
        for name, layer in names.items():
            assert scale[id(model.get_parameter(name))] == 0.5 ** (DEPTH + 1 - layer), name


# ---- ade20k_seg runs -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ade(tmp_path_factory):
    from transfer.synth import generate
    root = tmp_path_factory.mktemp("segvariants")
    generate(root, n_train=8, n_val=8, img_size=32, seed=1, progress=False)
    return root


def _run(ckpt, data, out, crop, extra=()):
    from tests.test_segmentation import run_args
    sets = [f"model.img_size={crop}", f"data.scale=({4 * crop},{crop})", f"data.test_scale=({4 * crop},{crop})",
            f"test.crop_size={crop}", "schedule.batch_size=2", "model.channels=8", "model.aux_channels=8", *extra]
    return run_args(ckpt, data, out, 1, 1, sets)


def test_one_ade20k_seg_step_on_dinov2_registers_and_beit(tmp_path, tiny_ade, capsys):
    _, dv2 = _dinov2(tmp_path)
    _, beit = _beit(tmp_path)
    for name, ckpt, crop in (("dinov2", dv2, 28), ("beit", beit, 32)):
        out = tmp_path / name
        assert main(_run(ckpt, tiny_ade, out, crop)) == 0
        rec = read_result(out)
        assert rec["init"]["format"] == name
        assert rec["init"]["arch_spec"]["patch_size"] == (14 if name == "dinov2" else 8)
        # --eval-only rebuilds the recorded variant encoder and gives the run's numbers
        ev = tmp_path / f"{name}-eval"
        assert main([*_run(ckpt, tiny_ade, ev, crop), "--eval-only", "--weights", str(out / "model_final.pth")]) == 0
        assert read_result(ev)["metrics"] == pytest.approx(rec["metrics"], nan_ok=True)
    capsys.readouterr()
    assert main(["export", "--to", "mmseg", "--ckpt", str(tmp_path / "dinov2" / "model_final.pth"),
                 "--out", str(tmp_path / "seg.pth")]) != 0  # mmseg's MAE has no registers: one line, no file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mmseg export" in err[0] and "register tokens" in err[0], err
    assert not (tmp_path / "seg.pth").exists()


def test_a_crop_that_is_not_a_multiple_of_patch_14_is_one_line_before_any_work(tmp_path, tiny_ade, capsys):
    _, dv2 = _dinov2(tmp_path)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(_run(dv2, tiny_ade, out, 32)) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a multiple of the patch size 14" in err[0], err
    assert not (out / "result.json").exists() and not list(out.glob("checkpoint*"))
    with pytest.raises(MaeBenchError, match="multiple"):
        segmenter(dv2, 32)


def test_a_block_the_backbone_would_run_differently_is_one_line():
    from transfer.segmentation.backbone import ViTBackbone
    vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=W, depth=DEPTH, num_heads=1, qk_norm=True)
    with pytest.raises(MaeBenchError, match="q_norm, k_norm"):
        ViTBackbone(vit, OUT, rel_pos_bias=True)


def test_an_encoder_too_shallow_for_four_maps_is_one_line():
    """Fewer than 4 blocks would name a block twice in the default out_indices; mmseg's backbones append its map
    once, so UperNet would get fewer than four maps: refused in one line instead of an IndexError later."""
    from timm.models.vision_transformer import VisionTransformer

    from mae_core.errors import MaeBenchError
    from transfer.segmentation.backbone import ViTBackbone
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    with pytest.raises(MaeBenchError, match=r"must name different blocks of the ViT's 2"):
        ViTBackbone(vit)
    with pytest.raises(MaeBenchError, match="must name different blocks"):
        ViTBackbone(VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, num_classes=0),
                    out_indices=(0, 1, 1, 3))
