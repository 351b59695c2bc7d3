"""BEiT-family checkpoint formats (mae_core/formats.py: beit, timm_beit, hf_beit, hf_data2vec): a tiny model built
with the method's own code (tests/reference/beit_vit.py: unilm's MIT-licensed BEiT model and checkpoint preparation;
timm's Beit for timm's names; transformers for HF folders), saved as the release saves it, loaded through `--ckpt`
(init_encoder), gives the reference's features to 1e-5 in fp32, at the release's grid and, with the relative
position tables and pos_embed resized as BEiT's run_class_finetuning.py does, at others."""
import math
from functools import partial

import pytest
import torch
import torch.nn as nn

from mae_core.errors import MaeBenchError
from mae_core.pos_embed import resize_rel_pos_table
from tests.reference import beit_vit
from tests.test_formats import _one_line, close, images, ours  # the shared loading and comparison helpers
from transfer.encoder import init_encoder, refuse_variants

W, HEADS, PATCH = 64, 2, 8
LN = partial(nn.LayerNorm, eps=1e-6)  # unilm's beit_* models
NO_MASK = torch.zeros(2, 16, dtype=torch.bool)  # the pretraining model's bool_masked_pos: no patch masked


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random (relative position tables, gammas, q / v biases, tokens), so that no weight can be
    dropped or mis-mapped without changing the features."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if p.ndim == 1 and ("norm" in name or "layernorm" in name) else 0.0
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + base)
    return model.eval()


def finetune_reference(ckpt: dict, size: int, **kw) -> nn.Module:
    """unilm's fine-tuning model at `size`, loaded as run_class_finetuning.py loads a pretrained checkpoint
    (shared table expanded, tables and pos_embed resized; utils.load_state_dict is not strict)."""
    model = beit_vit.VisionTransformer(img_size=size, patch_size=PATCH, embed_dim=W, depth=2, num_heads=HEADS,
                                       qkv_bias=True, norm_layer=LN, num_classes=0, **kw)
    sd = beit_vit.prepare_checkpoint(model, {k: v.clone() for k, v in ckpt.items()})
    missing, _ = model.load_state_dict(sd, strict=False)
    assert not [k for k in missing if "relative_position_index" not in k], missing
    return model.eval()


def tokens(ref: nn.Module, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    return norm(ref.get_intermediate_layers(x)[-1])


# ---- unilm's releases --------------------------------------------------------------------------------------------
def _pretrained(abs_pos: bool = False) -> nn.Module:
    """BEiT's pretraining model as its release configs build it: shared relative position table, layer scale,
    no absolute position embedding (beit_base_patch16_224_8k_vocab with --rel_pos_bias shared)."""
    return randomize(beit_vit.VisionTransformerForMaskedImageModeling(
        img_size=32, patch_size=PATCH, vocab_size=16, embed_dim=W, depth=2, num_heads=HEADS, qkv_bias=True,
        norm_layer=LN, init_values=0.1, use_abs_pos_emb=abs_pos, use_shared_rel_pos_bias=True))


def test_beit_pretrained_release_with_a_shared_table(tmp_path, capsys):
    ref = _pretrained()
    ckpt = ref.state_dict()  # unilm saves relative_position_index buffers too
    assert "rel_pos_bias.relative_position_index" in ckpt
    path = tmp_path / "beit_base_patch16_224_pt22k.pth"
    torch.save({"model": ckpt}, path)
    model, info = ours(str(path), 32)
    x = images(32)
    with torch.no_grad():
        close(model.forward_features(x), ref.forward_features(x, NO_MASK))
    assert info["format"] == "beit" and info["kind"] == "beit"
    spec = info["arch_spec"]
    assert spec["beit"] and spec["rel_pos_bias"] and not spec["abs_pos"] and spec["layer_scale"] and spec["qkv_bias"]
    assert spec["num_heads"] == HEADS
    assert {"lm_head.weight", "mask_token", "rel_pos_bias.relative_position_index",
            "rel_pos_bias.relative_position_bias_table"} <= set(info["dropped"])
    assert "format beit" in capsys.readouterr().out
    for size in (48, 24):  # the 4 x 4 tables resized to 6 x 6 and 3 x 3 as BEiT's fine-tuning does
        model, _ = ours(str(path), size)
        fine = finetune_reference(ckpt, size, use_abs_pos_emb=False, use_rel_pos_bias=True, init_values=0.1,
                                  use_mean_pooling=False)
        with torch.no_grad():
            close(model.forward_features(images(size)), tokens(fine, images(size), fine.norm))


@pytest.mark.parametrize("abs_pos", [True, False])
def test_beit_finetuned_release(tmp_path, abs_pos):
    """A fine-tuned classifier (per-block tables, mean pooling: fc_norm and no final norm, a head): fc_norm becomes
    the encoder's norm, as for MAE's fine-tuned releases."""
    kw = dict(use_abs_pos_emb=abs_pos, use_rel_pos_bias=True, init_values=0.1, use_mean_pooling=True)
    ref = randomize(beit_vit.VisionTransformer(img_size=32, patch_size=PATCH, embed_dim=W, depth=2, num_heads=HEADS,
                                               qkv_bias=True, norm_layer=LN, num_classes=10, **kw))
    path = tmp_path / "beit_base_patch16_224_pt22k_ft22kto1k.pth"
    torch.save({"model": ref.state_dict()}, path)
    model, info = ours(str(path), 32)
    with torch.no_grad():
        close(model.forward_features(images(32)), tokens(ref, images(32), ref.fc_norm))
    assert info["format"] == "beit" and info["arch_spec"]["abs_pos"] == abs_pos
    assert {"head.weight", "blocks.1.attn.relative_position_index"} <= set(info["dropped"])
    model, info = ours(str(path), 48)
    fine = finetune_reference({k: v for k, v in ref.state_dict().items() if not k.startswith("head.")}, 48, **kw)
    with torch.no_grad():
        close(model.forward_features(images(48)), tokens(fine, images(48), fine.fc_norm))


def test_beit_v2_release_under_module_with_its_pretraining_head(tmp_path):
    """BEiT v2's pretraining checkpoints: DeepSpeed's `module` key, absolute pos_embed beside the shared table, and
    the patch-aggregation head (cls_pt_layers, cls_pt_norm, cls_pt_lm_head) of its
    VisionTransformerForMaskedImageModelingCLS."""
    ref = _pretrained(abs_pos=True)
    sd = dict(ref.state_dict())
    sd.update({"cls_pt_layers.0.norm1.weight": torch.ones(W), "cls_pt_norm.weight": torch.ones(W),
               "cls_pt_lm_head.weight": torch.zeros(16, W)})
    path = tmp_path / "beitv2_base_patch16_224_pt1k.pth"
    torch.save({"module": sd}, path)
    model, info = ours(str(path), 32)
    with torch.no_grad():
        close(model.forward_features(images(32)), ref.forward_features(images(32), NO_MASK))
    assert info["format"] == "beit" and info["arch_spec"]["abs_pos"]
    assert {"cls_pt_layers.0.norm1.weight", "cls_pt_norm.weight", "cls_pt_lm_head.weight"} <= set(info["dropped"])


# ---- timm's Beit state dicts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(use_rel_pos_bias=True, global_pool="avg", use_abs_pos_emb=False),
                                dict(use_shared_rel_pos_bias=True, global_pool="token")])
def test_timm_beit_state_dict(tmp_path, kw):
    from safetensors.torch import save_file
    from timm.models.beit import Beit
    ref = randomize(Beit(img_size=32, patch_size=PATCH, embed_dim=W, depth=2, num_heads=HEADS, num_classes=10,
                         init_values=0.1, **kw))
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    model, info = ours(str(path), 32)
    with torch.no_grad():  # an avg-pool timm Beit's fc_norm is the LayerNorm that last saw the tokens
        close(model.forward_features(images(32)), ref.fc_norm(ref.forward_features(images(32))))
    assert info["format"] == "timm_beit" and info["kind"] == "beit"


# ---- HF transformers folders -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kw", [
    ("Data2VecVision", dict(use_shared_relative_position_bias=True, use_mean_pooling=True)),
    ("Beit", dict(use_relative_position_bias=True, use_absolute_position_embeddings=True, use_mean_pooling=False))])
def test_hf_folders(tmp_path, name, kw):
    transformers = pytest.importorskip("transformers")
    config = getattr(transformers, f"{name}Config")(hidden_size=W, num_hidden_layers=2, num_attention_heads=4,
                                                    intermediate_size=4 * W, image_size=32, patch_size=PATCH,
                                                    layer_scale_init_value=0.1, **kw)
    hf = randomize(getattr(transformers, f"{name}Model")(config, add_pooling_layer=True), seed=3)
    hf.save_pretrained(tmp_path / "hf")
    model, info = ours(str(tmp_path / "hf"), 32)
    with torch.no_grad():
        out = hf(pixel_values=images(32))
        # mean pooling: last_hidden_state is before the pooler's LayerNorm, which becomes the encoder's norm
        want = hf.pooler.layernorm(out.last_hidden_state) if kw["use_mean_pooling"] else out.last_hidden_state
        close(model.forward_features(images(32)), want)
    assert info["format"] == {"Beit": "hf_beit", "Data2VecVision": "hf_data2vec"}[name]
    assert info["arch_spec"]["num_heads"] == 4 and info["arch_spec"]["norm_eps"] == 1e-12


# ---- the relative position table resize --------------------------------------------------------------------------
def test_rel_pos_resize_is_beits_cubic_spline_through_geometric_positions():
    """An independent check of the resize rule: BEiT places the 7 offsets of a 4 x 4 grid at 0, +-1, +-(1 + q),
    +-(1 + q + q^2) with 1 + q + q^2 = 4 (the new half-width of a 5 x 5 grid); a cubic spline reproduces a bicubic
    polynomial exactly, so a table sampled from one at those positions must come back as the polynomial at the
    integer offsets -4..4; the three class-token rows are kept."""
    q = (-1 + math.sqrt(13)) / 2
    pos = torch.tensor([-(1 + q + q * q), -(1 + q), -1.0, 0.0, 1.0, 1 + q, 1 + q + q * q], dtype=torch.float64)

    def poly(y, x, h):
        return 0.3 * y ** 3 - 0.1 * x ** 3 * (h + 1) + 0.5 * x * y ** 2 + x - 2.0 * y + h

    table = torch.empty(7 * 7 + 3, 2)
    for h in range(2):
        table[:-3, h] = poly(pos[:, None], pos[None, :], h).reshape(-1).float()
    table[-3:] = torch.tensor([[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]])
    new = resize_rel_pos_table(table, (5, 5))
    assert new.shape == (9 * 9 + 3, 2) and torch.equal(new[-3:], table[-3:])
    grid = torch.arange(-4, 5, dtype=torch.float64)
    for h in range(2):
        want = poly(grid[:, None], grid[None, :], h).reshape(-1).float()
        assert torch.allclose(new[:-3, h], want, atol=1e-3, rtol=1e-4), (new[:-3, h] - want).abs().max()
    assert resize_rel_pos_table(table, (4, 4)) is table


# ---- refusals, the other tasks, layer decay ----------------------------------------------------------------------
def test_beit_weights_are_refused_rather_than_dropped(tmp_path):
    ref = _pretrained(abs_pos=True)  # (a timm ViT needs a pos_embed to get as far as the fit check)
    path = tmp_path / "beit.pth"
    torch.save({k: v for k, v in ref.state_dict().items() if "index" not in k}, path)  # flat: timm_beit
    with pytest.raises(MaeBenchError) as e:  # read as a plain timm ViT, gammas / q,v biases / tables would go
        ours(f"timm:{path}", 32)
    _one_line(e, str(path), "refusing to drop")
    assert "gamma_1" in str(e.value) or "q_bias" in str(e.value)
    bad = dict(ref.state_dict())
    bad["blocks.0.attn.relative_position_index"] = torch.zeros(17, 17, dtype=torch.int64)
    bad["blocks.0.attn.relative_position_bias_table"] = torch.zeros(52, HEADS)
    torch.save({"model": bad}, tmp_path / "bad_index.pth")
    with pytest.raises(MaeBenchError) as e:  # an index other than BEiT's would change the attention
        ours(str(tmp_path / "bad_index.pth"), 32)
    _one_line(e, "bad_index.pth", "relative_position_index", "refusing to drop")


def test_vitdet_refuses_a_beit_encoder_in_one_line(tmp_path):
    torch.save({"model": _pretrained().state_dict()}, tmp_path / "beit.pth")
    _, info = ours(str(tmp_path / "beit.pth"), 32)
    with pytest.raises(MaeBenchError) as e:
        refuse_variants(info, "ViTDet (coco_det)")
    _one_line(e, "ViTDet", "BEiT blocks", "relative position bias table per block")
    from transfer.detection.export import detectron2_state_dict
    with pytest.raises(MaeBenchError, match="detectron2 export"):
        detectron2_state_dict(tmp_path / "beit.pth")


def test_layer_decay_and_partial_tuning_of_a_beit_encoder(tmp_path):
    from transfer.classification.heads import set_trainable
    from transfer.classification.optim import param_groups_lrd
    torch.save({"model": _pretrained().state_dict()}, tmp_path / "beit.pth")
    model, _ = init_encoder(str(tmp_path / "beit.pth"), arch=None, img_size=32, num_classes=3, global_pool="avg")
    groups = param_groups_lrd(model, 0.05, model.no_weight_decay(), layer_decay=0.5)

    def group_of(name):
        p = model.get_parameter(name)
        return next(g for g in groups if any(q is p for q in g["params"]))
    table = group_of("blocks.0.attn.relative_position_bias_table")  # BEiT decays the tables (its default)
    assert table["lr_scale"] == 0.5 ** 2 and table["weight_decay"] == 0.05
    assert group_of("blocks.1.gamma_2")["weight_decay"] == 0.0 and group_of("blocks.1.attn.q_bias")["lr_scale"] == 0.5
    assert group_of("cls_token")["lr_scale"] == 0.5 ** 3 and group_of("cls_token")["weight_decay"] == 0.0
    tuned = set_trainable(model, "partial", 1, "mlp")
    assert "blocks.1.gamma_2" in tuned and "blocks.1.gamma_1" not in tuned and "blocks.0.gamma_2" not in tuned


@pytest.mark.parametrize("task", ["knn", "in1k_linear", "in1k_partial", "in1k_finetune"])
def test_classification_tasks_run_on_a_beit_checkpoint(synth_root, tmp_path, task):
    from benchmarks.cli import main
    from results.record import read_result, sha256_file
    from tests.test_classification import run_args
    ref = randomize(beit_vit.VisionTransformerForMaskedImageModeling(
        img_size=32, patch_size=16, vocab_size=16, embed_dim=W, depth=1, num_heads=1, qkv_bias=True, norm_layer=LN,
        init_values=0.1, use_abs_pos_emb=False, use_shared_rel_pos_bias=True))
    ckpt = tmp_path / "beit.pth"
    torch.save({"model": ref.state_dict()}, ckpt)
    out = tmp_path / task
    if task == "knn":
        argv = ["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(ckpt), "--data", str(synth_root),
                "--out", str(out), "--set", "model.img_size=32", "--set", "schedule.batch_size=8",
                "--set", "runtime.device='cpu'"]
    else:
        argv = run_args(task, ckpt, synth_root, out, epochs=1,
                        extra=["model.img_size=32", *(["blocks=1"] if task == "in1k_partial" else [])])
    assert main(argv) == 0
    rec = read_result(out)
    assert rec["init"]["format"] == "beit" and rec["init"]["kind"] == "beit" and rec["init"]["arch_spec"]["beit"]
    assert rec["init"]["sha256"] == sha256_file(ckpt)
    assert "rel_pos_bias.relative_position_bias_table" in rec["init"]["unused"]["keys"]


def test_every_format_kind_is_a_result_init_kind():
    """A run records its init kind; the record schema (results/record.py, torch-free, so a list of its own) must
    know every registered format's kind, or a finished run fails at its last step."""
    from mae_core.formats import FORMATS
    from results.record import INIT_KINDS
    assert {f.kind for f in FORMATS.values()} <= set(INIT_KINDS)


def test_export_to_timm_keeps_a_beit_encoder_and_heads_come_from_its_tables(tmp_path):
    """`mae-bench export --to timm` writes timm Beit names (the shared table already in every block), which read
    back as timm_beit and load strictly into timm's own Beit; the tables say the number of heads, so an --arch
    that disagrees is one error line."""
    from timm.models.beit import Beit

    from mae_core.export import export_timm
    ref = _pretrained()
    torch.save({"model": ref.state_dict()}, tmp_path / "beit.pth")
    export_timm(tmp_path / "beit.pth", tmp_path / "beit_timm.safetensors")
    model, info = ours(str(tmp_path / "beit_timm.safetensors"), 32)
    assert info["format"] == "timm_beit"
    with torch.no_grad():
        close(model.forward_features(images(32)), ref.forward_features(images(32), NO_MASK))
    from safetensors.torch import load_file
    timm_beit = Beit(img_size=32, patch_size=PATCH, embed_dim=W, depth=2, num_heads=HEADS, num_classes=0,
                     global_pool="token", init_values=0.1, use_abs_pos_emb=False, use_rel_pos_bias=True)
    timm_beit.load_state_dict(load_file(tmp_path / "beit_timm.safetensors"), strict=True)
    with pytest.raises(MaeBenchError) as e:
        ours(str(tmp_path / "beit.pth"), 32, arch=f"vit_w{W}_d2_h4_patch{PATCH}")
    _one_line(e, "relative position tables have 2 heads, not 4")


def test_hf_data2vec_without_a_final_norm(tmp_path):
    """Data2VecVisionModel's default (add_pooling_layer=False) with use_mean_pooling has no final LayerNorm at all:
    average pooling (a fresh fc_norm, the MAE fine-tuning protocol) takes its un-normalised tokens as HF computes
    them; class-token pooling, which reads the final norm, is one error line naming the missing norm."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Data2VecVisionConfig(hidden_size=W, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=4 * W, image_size=32, patch_size=PATCH,
                                               use_relative_position_bias=True, use_mean_pooling=True)
    hf = randomize(transformers.Data2VecVisionModel(config), seed=4)
    hf.save_pretrained(tmp_path / "hf")
    model, info = ours(str(tmp_path / "hf"), 32, global_pool="avg")
    with torch.no_grad():
        close(model.forward_features(images(32)), hf(pixel_values=images(32)).last_hidden_state)
    with pytest.raises(MaeBenchError) as e:
        ours(str(tmp_path / "hf"), 32)
    _one_line(e, "missing: norm.weight")
