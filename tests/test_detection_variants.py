"""coco_det takes every encoder variant the formats registry reads (README, Protocols): a tiny model built with its
method's own code (timm for timm / DeiT variants; tests/reference's DINOv2 and BEiT), saved as its release saves it
and loaded through `--ckpt` into the ViTDet backbone, equals an independent computation of ViTDet's protocol: the
reference model's own blocks run on the patch tokens (its patch embedding plus the patches' position embeddings;
ViTDet drops the class token's role, so class, register and distillation tokens take no part), with one window
covering the whole grid, compared on the last block's output. Then: layer scale and BEiT's tables are used, a table
is resized to a window by BEiT's own rule, what stays refused is one line, and one coco_det step runs."""
import pytest
import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from mae_core.errors import MaeBenchError
from mae_core.pos_embed import resize_rel_pos_table
from tests.reference import beit_vit, dinov2_vit
from tests.test_formats import _one_line, randomize
from tests.test_formats_beit import LN, randomize as randomize_beit
from transfer.detection.model import vit_from_init

W, HEADS, GRID = 128, 2, 4  # 64 px images, patch 16: a 4 x 4 grid
SIZE = 16 * GRID
CFG = dict(img_size=SIZE, pretrain_img_size=SIZE, window_size=GRID, drop_path=0.0, use_rel_pos=False)


def image(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def backbone(path, **cfg):
    vit, info = vit_from_init(str(path), None, {**CFG, **cfg})
    return vit.eval(), info


def tokens(vit, x) -> torch.Tensor:
    """The backbone's last-block map [B, C, H, W] as tokens [B, H*W, C] (row-major, as the reference's)."""
    with torch.no_grad():
        return vit(x).flatten(2).transpose(1, 2)


def close(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()


# ---- timm and DeiT: layer scale, registers, distillation token, no class token ------------------------------------
TIMM = {"layer scale + 2 registers": (VisionTransformer, dict(init_values=0.1, reg_tokens=2, num_classes=0)),
        "no class token": (VisionTransformer, dict(init_values=0.1, class_token=False, global_pool="avg",
                                                   num_classes=0)),
        "registers, patch-only pos_embed": (VisionTransformer, dict(reg_tokens=1, no_embed_class=True, num_classes=0)),
        "no qkv bias": (VisionTransformer, dict(qkv_bias=False, num_classes=0)),
        "DeiT distilled": (VisionTransformerDistilled, dict(num_classes=10))}


@pytest.mark.parametrize("name", list(TIMM))
def test_timm_and_deit_variants_equal_their_own_blocks_on_the_patch_tokens(tmp_path, name):
    cls, kw = TIMM[name]
    ref = randomize(cls(img_size=SIZE, patch_size=16, embed_dim=W, depth=2, num_heads=HEADS, **kw))
    path = tmp_path / "v.pth"
    torch.save({"model": ref.state_dict()} if cls is VisionTransformerDistilled else ref.state_dict(), path)
    vit, info = backbone(path)
    slots = 0 if ref.no_embed_class else ref.num_prefix_tokens  # the prefix tokens' position slots come first
    with torch.no_grad():
        expected = ref.blocks(ref.patch_embed(image()) + ref.pos_embed[:, slots:])
    close(tokens(vit, image()), expected)
    dropped = info["dropped"]
    for key in ("cls_token", "reg_token", "dist_token"):
        assert (key in dropped) == (key in ref.state_dict()), key
        assert key not in dropped or "patch tokens only" in dropped[key]
    assert (f"pos_embed[:, :{slots}]" in dropped) == bool(slots)


# ---- DINOv2 (its own code): layer scale, registers, SwiGLU ---------------------------------------------------------
@pytest.mark.parametrize("regs, ffn", [(4, "mlp"), (0, "swiglufused")])
def test_dinov2_equals_its_own_blocks_on_the_patch_tokens(tmp_path, regs, ffn):
    ref = randomize(dinov2_vit.DinoVisionTransformer(img_size=SIZE, patch_size=16, embed_dim=W, depth=2,
                                                     num_heads=HEADS, init_values=1.0, ffn_layer=ffn,
                                                     num_register_tokens=regs))
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(ref.state_dict(), path)
    with torch.no_grad():  # DINOv2 adds pos_embed[:, 1:] to the patches (registers join after, unembedded)
        expected = ref.patch_embed(image()) + ref.pos_embed[:, 1:]
        for blk in ref.blocks:
            expected = blk(expected)
    for use_rel_pos in (False, True):  # ViTDet's decomposed relative position starts at zero: the same output
        vit, info = backbone(path, use_rel_pos=use_rel_pos)
        close(tokens(vit, image()), expected)
    assert info["format"] == "dinov2" and {"mask_token", "cls_token", "norm.weight"} <= set(info["dropped"])
    assert ("reg_token" in info["dropped"]) == bool(regs)
    before = tokens(vit, image())
    with torch.no_grad():
        vit.blocks[1].ls2.gamma.mul_(2)  # the pretrained gammas multiply as they did in pretraining
    assert not torch.allclose(tokens(vit, image()), before, atol=1e-3)


# ---- BEiT (unilm's code): q / v biases, layer scale, relative position tables -------------------------------------
def _beit(tmp_path, abs_pos: bool = False, depth: int = 2):
    ref = randomize_beit(beit_vit.VisionTransformerForMaskedImageModeling(
        img_size=SIZE, patch_size=16, vocab_size=16, embed_dim=64, depth=depth, num_heads=HEADS, qkv_bias=True,
        norm_layer=LN, init_values=0.1, use_abs_pos_emb=abs_pos, use_shared_rel_pos_bias=True))
    path = tmp_path / "beit.pth"
    torch.save({"model": ref.state_dict()}, path)
    return ref, path


@pytest.mark.parametrize("abs_pos", [False, True])
def test_beit_equals_its_own_blocks_on_the_patch_tokens(tmp_path, abs_pos):
    ref, path = _beit(tmp_path, abs_pos)
    with torch.no_grad():  # BEiT's own bias (rel_pos_bias(): its table through its index), patch rows and columns
        expected = ref.patch_embed(image()) + (ref.pos_embed[:, 1:] if abs_pos else 0)
        bias = ref.rel_pos_bias()[:, 1:, 1:]
        for blk in ref.blocks:
            expected = blk(expected, rel_pos_bias=bias)
    vit, info = backbone(path)
    close(tokens(vit, image()), expected)
    assert vit.pos_embed is None if not abs_pos else vit.pos_embed.shape == (1, GRID * GRID + 1, 64)
    assert "blocks.0.attn.relative_position_bias_table[-3:]" in info["dropped"]
    before = tokens(vit, image())
    for param in (vit.blocks[0].attn.relative_position_bias_table, vit.blocks[1].ls1.gamma, vit.blocks[1].attn.q_bias):
        noise = torch.randn(param.shape, generator=torch.Generator().manual_seed(0))  # not a constant: softmax
        with torch.no_grad():  # ignores a constant added to every logit
            param.add_(noise)
        assert not torch.allclose(tokens(vit, image()), before, atol=1e-3)
        with torch.no_grad():
            param.sub_(noise)


def test_a_windowed_block_gets_beits_table_resized_to_its_window(tmp_path):
    ref, path = _beit(tmp_path, depth=5)  # global blocks 0, 1, 2, 4; block 3 windowed
    vit, _ = backbone(path, window_size=2)
    table = ref.rel_pos_bias.relative_position_bias_table.detach()
    assert vit.window_block_indexes == [3] and vit.blocks[3].attn.table_grid == (2, 2)
    close(vit.blocks[3].attn.relative_position_bias_table, resize_rel_pos_table(table, (2, 2))[:-3])
    close(vit.blocks[4].attn.relative_position_bias_table, table[:-3])  # a global block: the whole 4 x 4 grid
    # the windowed block equals unilm's block run on each 2 x 2 window (norms, MLP and residuals are per token) with
    # BEiT's own bias for a 2 x 2 grid (its RelativePositionBias holding the resized table), patch rows / columns
    window_bias = beit_vit.RelativePositionBias((2, 2), HEADS)
    with torch.no_grad():
        window_bias.relative_position_bias_table.copy_(resize_rel_pos_table(table, (2, 2)))
        x = torch.randn(2, GRID, GRID, 64, generator=torch.Generator().manual_seed(3))
        windows = x.reshape(2, 2, 2, 2, 2, 64).permute(0, 1, 3, 2, 4, 5).reshape(8, 4, 64)  # [B * 4 windows, 4, C]
        out = ref.blocks[3](windows, rel_pos_bias=window_bias()[:, 1:, 1:])
        expected = out.reshape(2, 2, 2, 2, 2, 64).permute(0, 1, 3, 2, 4, 5).reshape(2, GRID, GRID, 64)
        close(vit.blocks[3](x), expected)


def test_what_stays_refused_is_one_line_before_any_work(tmp_path):
    ref = randomize(VisionTransformer(img_size=32, patch_size=16, in_chans=1, embed_dim=W, depth=1, num_heads=HEADS,
                                      num_classes=0))
    torch.save(ref.state_dict(), tmp_path / "gray.pth")
    with pytest.raises(MaeBenchError) as e:
        backbone(tmp_path / "gray.pth", img_size=32, pretrain_img_size=32)
    _one_line(e, "gray.pth", "RGB", "1 input channels")
    beit14 = randomize_beit(beit_vit.VisionTransformerForMaskedImageModeling(
        img_size=56, patch_size=14, vocab_size=16, embed_dim=64, depth=1, num_heads=HEADS, qkv_bias=True,
        norm_layer=LN, init_values=0.1, use_abs_pos_emb=False, use_shared_rel_pos_bias=True))
    torch.save({"model": beit14.state_dict()}, tmp_path / "beit14.pth")
    with pytest.raises(MaeBenchError) as e:
        backbone(tmp_path / "beit14.pth", img_size=64, pretrain_img_size=112)
    _one_line(e, "beit14.pth", "patch 14", "relative position tables")


# ---- one coco_det step on a DINOv2-with-registers (patch 14) and a BEiT checkpoint --------------------------------
def test_coco_det_runs_on_dinov2_registers_and_beit(synth_root, tmp_path):
    from benchmarks.cli import main
    from results.record import read_result
    from tests.test_detection_train import TINY
    dv2 = randomize(dinov2_vit.DinoVisionTransformer(img_size=56, patch_size=14, embed_dim=64, depth=1, num_heads=1,
                                                     init_values=1.0, num_register_tokens=2))
    torch.save(dv2.state_dict(), tmp_path / "dinov2_reg.pth")
    _, beit = _beit(tmp_path, depth=1)
    for ckpt, size, fmt in ((tmp_path / "dinov2_reg.pth", 112, "dinov2"), (beit, 64, "beit")):
        out = tmp_path / fmt
        sets = [*TINY, "schedule.epochs=1", f"model.pretrain_img_size={size}", "data.subset=4", "data.val_subset=2"]
        argv = ["run", "--task", "coco_det", "--recipe", "smoke", "--ckpt", str(ckpt), "--data", str(synth_root),
                "--out", str(out), *[a for s in sets for a in ("--set", s)]]
        assert main(argv) == 0
        rec = read_result(out)
        assert rec["init"]["format"] == fmt and rec["init"]["kind"] == fmt
        unused = rec["init"]["unused"]["keys"]
        assert "cls_token" in unused and ("reg_token" in unused) == (fmt == "dinov2")
        assert any(k.endswith("relative_position_bias_table[-3:]") for k in unused) == (fmt == "beit")
        assert {"bbox_AP", "segm_AP"} <= set(rec["metrics"])
