"""Checkpoint formats (mae_core/formats.py): for each method's release layout, a tiny model built with the method's
own model code (tests/reference: trimmed copies of DINOv2's and iBOT's / DINO's Apache-2.0 code; timm for DeiT and
MoCo v3's encoder; transformers for HF folders), saved the way the release saves it, loaded through `--ckpt`
(init_encoder), gives the reference's features to 1e-5 in fp32."""
import argparse

import pytest
import torch
import torch.nn as nn
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from mae_core import formats
from mae_core.errors import MaeBenchError
from mae_core.weights import load_encoder
from tests.reference import dinov2_vit, ibot_vit
from transfer.encoder import init_encoder, refuse_variants

W, HEADS = 128, 2  # head dim 64: the convention every format falls back to


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random (pos_embed, tokens and layer-scale gammas included), so no weight can be dropped
    or mis-mapped without changing the features."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.ndim == 1 and p.shape[0] == W else 0.0))
    return model.eval()


def images(size: int, n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def ours(ckpt: str, size: int, **kw):
    model, info = init_encoder(ckpt, arch=kw.pop("arch", None), img_size=size, num_classes=0, **kw)
    return model.eval(), info


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()


# ---- DINOv2 torch-hub releases -----------------------------------------------------------------------------------
@pytest.mark.parametrize("regs, ffn", [(0, "mlp"), (4, "mlp"), (0, "swiglufused")])
def test_dinov2_hub_release(tmp_path, regs, ffn, capsys):
    ref = randomize(dinov2_vit.DinoVisionTransformer(img_size=56, patch_size=14, embed_dim=W, depth=2,
                                                     num_heads=HEADS, init_values=1.0, ffn_layer=ffn,
                                                     num_register_tokens=regs))
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(ref.state_dict(), path)  # hubconf: a flat DinoVisionTransformer state dict
    for size in (56, 84, 28):  # the release's grid, and another one (DINOv2's interpolate_offset resampling)
        model, info = ours(str(path), size)
        with torch.no_grad():
            close(model.forward_features(images(size)), ref.forward_features(images(size))["x_norm"])
    assert info["format"] == "dinov2" and info["kind"] == "dinov2"
    spec = info["arch_spec"]
    assert (spec["patch_size"], spec["num_heads"], spec["layer_scale"], spec["reg_tokens"]) == (14, HEADS, True, regs)
    assert spec["no_embed_class"] == bool(regs) and spec["swiglu"] == (ffn != "mlp")
    assert set(info["dropped"]) == {"mask_token"}
    assert "format dinov2" in capsys.readouterr().out


# ---- DINO and iBOT: full checkpoints (teacher / student) and backbones -------------------------------------------
def _dino_checkpoint(backbone, loss_key: str, arch: str = "vit_small") -> dict:
    teacher = ibot_vit.MultiCropWrapper(backbone, ibot_vit.DINOHead(W, 16))
    student_sd = {f"module.{k}": v + 1 for k, v in teacher.state_dict().items()}  # DDP-wrapped, other weights
    return {"student": student_sd, "teacher": teacher.state_dict(), "optimizer": {}, "epoch": 3,
            "args": argparse.Namespace(arch=arch, patch_size=16), loss_key: {"center": torch.zeros(1, 16)}}


@pytest.mark.filterwarnings("ignore:.*weight_norm")  # DINO's head uses the old weight_norm (weight_g / weight_v)
def test_dino_full_checkpoint_uses_the_teacher(tmp_path):
    ref = randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=16, embed_dim=W, depth=2, num_heads=HEADS,
                                               qkv_bias=True))
    path = tmp_path / "checkpoint.pth"
    torch.save(_dino_checkpoint(ref, "dino_loss"), path)
    for size in (32, 48):
        model, info = ours(str(path), size)
        with torch.no_grad():
            close(model.forward_features(images(size)), ref(images(size)))
    assert info["format"] == "dino" and info["arch"] == f"vit_w{W}_d2_h{HEADS}_patch16"
    assert any(k.startswith("student.module.backbone.") for k in info["dropped"])
    assert any(k.startswith("head.last_layer") for k in info["dropped"])


@pytest.mark.filterwarnings("ignore:.*weight_norm")
@pytest.mark.parametrize("method, loss_key", [("dino", "dino_loss"), ("ibot", "ibot_loss")])
def test_the_student_of_a_full_checkpoint_when_forced(tmp_path, method, loss_key):
    """DINO's / iBOT's eval code with --checkpoint_key student: `dino_student:PATH` reads the student network."""
    ref = randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=16, embed_dim=W, depth=2, num_heads=HEADS,
                                               qkv_bias=True))
    path = tmp_path / "checkpoint.pth"
    torch.save(_dino_checkpoint(ref, loss_key), path)
    student = randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=16, embed_dim=W, depth=2,
                                                   num_heads=HEADS, qkv_bias=True))
    student.load_state_dict({k: v + 1 for k, v in ref.state_dict().items()})  # _dino_checkpoint's student
    model, info = ours(f"{method}_student:{path}", 32)
    with torch.no_grad():
        a, b = model.forward_features(images(32)), student(images(32))
        teacher = ref(images(32))
    # the student's weights are the teacher's + 1: large pre-norm activations, so fp32 agrees to ~2e-5 of the
    # features' size (the teacher's features are ~1e0 of it away)
    scale = b.abs().max()
    assert (a - b).abs().max() / scale < 1e-4 < (teacher - b).abs().max() / scale * 1e-3
    assert info["format"] == f"{method}_student" and info["kind"] == method
    assert any(k.startswith("teacher.backbone.") for k in info["dropped"])
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "backbone.pth")
    with pytest.raises(MaeBenchError, match="has no `student`"):
        ours(f"{method}_student:{tmp_path / 'backbone.pth'}", 32)


def test_dino_backbone_release_reads_as_timm_unless_forced(tmp_path):
    ref = randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=16, embed_dim=W, depth=1, num_heads=HEADS,
                                               qkv_bias=True))
    path = tmp_path / "dino_deitsmall16_pretrain.pth"
    torch.save(ref.state_dict(), path)  # the released backbone: a flat VisionTransformer state dict
    _, info = ours(str(path), 32)
    assert info["format"] == "timm"
    model, info = ours(f"dino:{path}", 32)
    assert info["format"] == "dino" and info["kind"] == "dino"
    with torch.no_grad():
        close(model.forward_features(images(32)), ref(images(32)))


@pytest.mark.filterwarnings("ignore:.*weight_norm")
def test_ibot_full_and_backbone_checkpoints(tmp_path):
    ref = randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=16, embed_dim=W, depth=2, num_heads=HEADS,
                                               qkv_bias=True, init_values=0.1, masked_im_modeling=True))
    full, backbone = tmp_path / "checkpoint.pth", tmp_path / "checkpoint_teacher.pth"
    torch.save(_dino_checkpoint(ref, "ibot_loss", "vit_base"), full)
    torch.save({"state_dict": ref.state_dict()}, backbone)
    for path in (full, backbone):
        model, info = ours(str(path), 32)
        with torch.no_grad():
            close(model.forward_features(images(32)), ref(images(32)))
        assert info["format"] == "ibot" and info["arch_spec"]["layer_scale"]
        assert "masked_embed" in info["dropped"]


# ---- MoCo v3 -----------------------------------------------------------------------------------------------------
def test_moco_v3_uses_the_base_encoder(tmp_path):
    """moco-v3 (CC-BY-NC, so not copied): vits.py's VisionTransformerMoCo is timm's VisionTransformer with a fixed
    2-D sin-cos pos_embed and 12 heads; moco/builder.py's MoCo_ViT replaces the encoders' `head` by the projection
    MLP (Linear, BatchNorm1d, ReLU, ...) and adds a predictor; main_moco.py saves {epoch, arch, state_dict (DDP:
    module.), optimizer, scaler}. The reference is written from those semantics."""
    d = 192  # 12 heads of 16
    base = randomize(VisionTransformer(img_size=32, patch_size=16, embed_dim=d, depth=2, num_heads=12, qkv_bias=True,
                                       num_classes=0))

    def mlp():
        return nn.Sequential(nn.Linear(d, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16))
    base.head = mlp()
    momentum = randomize(VisionTransformer(img_size=32, patch_size=16, embed_dim=d, depth=2, num_heads=12,
                                           qkv_bias=True, num_classes=0), seed=5)
    momentum.head = mlp()
    wrapper = nn.Module()
    wrapper.base_encoder, wrapper.momentum_encoder, wrapper.predictor = base, momentum, mlp()
    sd = {f"module.{k}": v for k, v in wrapper.state_dict().items()}
    path = tmp_path / "vit-s-300ep.pth.tar"
    torch.save({"epoch": 300, "arch": "vit_small", "state_dict": sd, "optimizer": {}, "scaler": {}}, path)
    model, info = ours(str(path), 32)
    with torch.no_grad():
        close(model.forward_features(images(32)), base.forward_features(images(32)))
    assert info["format"] == "moco_v3" and info["arch_spec"]["num_heads"] == 12
    reasons = set(info["dropped"].values())
    assert any("momentum encoder" in r for r in reasons) and any("projection head" in r for r in reasons)


# ---- DeiT and timm variants --------------------------------------------------------------------------------------
@pytest.mark.parametrize("distilled", [False, True])
def test_deit_release(tmp_path, distilled):
    cls = VisionTransformerDistilled if distilled else VisionTransformer
    ref = randomize(cls(img_size=32, patch_size=16, embed_dim=W, depth=2, num_heads=HEADS, num_classes=10))
    path = tmp_path / "deit.pth"
    torch.save({"model": ref.state_dict()}, path)  # the DeiT releases: {"model": state dict}
    for size in (32, 48):
        model, info = ours(str(path), size)
        if size == 32:
            with torch.no_grad():
                close(model.forward_features(images(32)), ref.forward_features(images(32)))
    assert info["format"] == "deit" and info["arch_spec"]["dist_token"] == distilled
    assert model.pos_embed.shape[1] == 9 + 1 + distilled  # both prefix slots kept when resized
    assert {"head.weight", "head.bias"} <= set(info["dropped"])
    assert ("head_dist.weight" in info["dropped"]) == distilled


def test_deit3_release(tmp_path):
    """DeiT III (deit models_v2.py, Layer_scale_init_Block): x + gamma_1 * attn(norm1(x)), pos_embed over the patches
    only, added before the class token is prepended - timm's VisionTransformer(init_values, no_embed_class), whose
    ls1.gamma / ls2.gamma the release names gamma_1 / gamma_2."""
    ref = randomize(VisionTransformer(img_size=32, patch_size=16, embed_dim=W, depth=2, num_heads=HEADS, num_classes=10,
                                      init_values=0.1, no_embed_class=True))
    sd = {k.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2"): v for k, v in ref.state_dict().items()}
    torch.save({"model": sd}, tmp_path / "deit_3_base_224_1k.pth")
    model, info = ours(str(tmp_path / "deit_3_base_224_1k.pth"), 32)
    with torch.no_grad():
        close(model.forward_features(images(32)), ref.forward_features(images(32)))
    assert info["format"] == "deit" and info["arch_spec"]["layer_scale"] and info["arch_spec"]["no_embed_class"]


@pytest.mark.parametrize("kw", [dict(init_values=0.5), dict(reg_tokens=4, no_embed_class=True),
                                dict(reg_tokens=2), dict(class_token=False, global_pool="avg")])
def test_timm_variants(tmp_path, kw):
    ref = randomize(VisionTransformer(img_size=32, patch_size=8, embed_dim=W, depth=2, num_heads=HEADS, num_classes=0,
                                      **kw))
    path = tmp_path / "timm.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    pool = "avg" if kw.get("class_token") is False else "token"
    model, info = ours(str(path), 32, global_pool=pool)
    with torch.no_grad():  # (avg pooling: the tokens before pooling; fc_norm starts fresh, as MAE fine-tuning)
        close(model.forward_features(images(32)), ref.forward_features(images(32)))
    assert info["format"] == "timm"
    if pool == "avg":  # a class-token-free encoder has no token to pool
        with pytest.raises(MaeBenchError, match="no class token"):
            ours(str(path), 32)


def test_a_researchers_own_size_loads_and_arch_sets_the_heads(tmp_path):
    ref = randomize(VisionTransformer(img_size=32, patch_size=8, embed_dim=W, depth=2, num_heads=4, num_classes=0))
    path = tmp_path / "mine.pth"
    torch.save(ref.state_dict(), path)
    model, info = ours(str(path), 32)
    assert info["arch"] == "vit_w128_d2_h2_patch8"  # head dim 64 by default: not the heads it was trained with
    model, info = ours(str(path), 32, arch="vit_w128_d2_h4_patch8")
    with torch.no_grad():
        close(model.forward_features(images(32)), ref.forward_features(images(32)))
    with pytest.raises(MaeBenchError, match="but --arch says"):
        ours(str(path), 32, arch="vit_w128_d3_h4_patch8")


# ---- HF transformers folders -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ViT", "DeiT", "Dinov2", "Dinov2WithRegisters"])
def test_hf_folders(tmp_path, name):
    transformers = pytest.importorskip("transformers")
    config = getattr(transformers, f"{name}Config")(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                    intermediate_size=256, image_size=32, patch_size=8)
    hf = getattr(transformers, f"{name}Model")(config)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.ndim == 1 else 0.0))
    hf.eval().save_pretrained(tmp_path / "hf")
    for size in (32, 48, 16) if name.startswith("Dinov2") else (32,):  # HF's Dinov2 always resamples pos embeddings
        model, info = ours(str(tmp_path / "hf"), size)
        with torch.no_grad():
            close(model.forward_features(images(size)), hf(pixel_values=images(size)).last_hidden_state)
    assert info["format"] == {"ViT": "hf_vit", "DeiT": "hf_deit"}.get(name, "hf_dinov2")
    assert info["arch_spec"]["num_heads"] == 4 and len(info["sha256"]) == 64


# ---- refusals ----------------------------------------------------------------------------------------------------
def _plain_vit(tmp_path, name="vit.pth", **extra):
    ref = randomize(VisionTransformer(img_size=32, patch_size=16, embed_dim=W, depth=1, num_heads=HEADS, num_classes=0))
    sd = {**ref.state_dict(), **extra}
    path = tmp_path / name
    torch.save(sd, path)
    return path


def _one_line(exc, *phrases):
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for p in phrases:
        assert p in msg, msg


def test_output_changing_keys_are_refused_not_dropped(tmp_path):
    path = _plain_vit(tmp_path, **{"blocks.0.attn.relative_position_bias_table": torch.zeros(12, HEADS)})
    with pytest.raises(MaeBenchError) as e:  # read as BEiT (timm_beit), whose k projection has no bias
        ours(str(path), 32)
    _one_line(e, "timm_beit", "blocks.0.attn.qkv.bias", "refusing to drop")
    with pytest.raises(MaeBenchError) as e:  # forced, the table would be dropped: refused
        ours(f"timm:{path}", 32)
    _one_line(e, "relative_position_bias_table", "refusing to drop")
    path = _plain_vit(tmp_path, "gamma.pth", **{"blocks.0.gamma_1": torch.ones(W)})
    with pytest.raises(MaeBenchError) as e:
        ours(str(path), 32)
    _one_line(e, "blocks.0.gamma_1", "refusing to drop")
    with pytest.raises(MaeBenchError, match="refusing to drop"):  # the export path: load_encoder's own fit check
        load_encoder(path)


@pytest.mark.parametrize("bad, words", [(torch.ones(W, dtype=torch.int64), "int64"),
                                        (torch.full((W,), float("nan")), "non-finite"),
                                        (torch.full((W,), float("inf")), "non-finite"),
                                        (torch.full((W,), 1e38), "past any")])
def test_integer_and_non_finite_weights_are_refused(tmp_path, bad, words):
    path = _plain_vit(tmp_path, **{"blocks.0.norm1.weight": bad})
    with pytest.raises(MaeBenchError) as e:
        ours(str(path), 32)
    _one_line(e, str(path), "blocks.0.norm1.weight", words)


def test_unknown_ambiguous_and_forced_formats(tmp_path, monkeypatch):
    path = tmp_path / "odd.pth"
    torch.save({"net": {"blocks.0.x": torch.zeros(2)}, "epoch": 1}, path)
    with pytest.raises(MaeBenchError) as e:
        ours(str(path), 32)
    _one_line(e, "no known format", "dinov2", "FORMAT:PATH")
    with pytest.raises(MaeBenchError) as e:
        ours(f"eva:{path}", 32)
    _one_line(e, "unknown prefix 'eva:'", "moco_v3")
    plain = _plain_vit(tmp_path)
    monkeypatch.setitem(formats.FORMATS, "greedy", formats.Format("greedy", "timm", "", "", "", lambda top: True,
                                                                  formats.map_timm))
    with pytest.raises(MaeBenchError) as e:
        ours(str(plain), 32)
    _one_line(e, "ambiguous", "timm and greedy")
    monkeypatch.delitem(formats.FORMATS, "greedy")
    _, info = ours(f"supervised:{plain}", 32)  # our supervised baseline's meaning of the prefix is kept
    assert info["kind"] == "supervised" and info["format"] == "supervised"


def test_detection_and_the_mmseg_export_refuse_variants_in_one_line(tmp_path):
    ref = randomize(VisionTransformer(img_size=32, patch_size=16, embed_dim=W, depth=1, num_heads=HEADS, num_classes=0,
                                      init_values=0.1, reg_tokens=2))
    path = tmp_path / "ls.pth"
    torch.save(ref.state_dict(), path)
    _, info = ours(str(path), 32)
    with pytest.raises(MaeBenchError) as e:
        refuse_variants(info, "ViTDet (coco_det)")
    _one_line(e, "ViTDet", "layer scale", "2 register tokens")
    from transfer.detection.export import detectron2_state_dict
    from transfer.segmentation.export import export_mmseg
    with pytest.raises(MaeBenchError, match="detectron2 export"):
        detectron2_state_dict(path)
    with pytest.raises(MaeBenchError, match="mmseg export"):
        export_mmseg(path, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
    _, plain = ours(str(_plain_vit(tmp_path)), 32)
    refuse_variants(plain, "ViTDet (coco_det)")  # a plain ViT passes


def test_layer_decay_and_partial_tuning_place_the_variant_parameters():
    from transfer.classification.heads import set_trainable
    from transfer.classification.optim import layer_id
    model = VisionTransformer(img_size=32, patch_size=16, embed_dim=W, depth=3, num_heads=HEADS, num_classes=2,
                              init_values=0.1, reg_tokens=2)
    assert layer_id("reg_token", 3) == layer_id("cls_token", 3) == 0  # the stem, as timm's group_matcher
    assert layer_id("blocks.2.ls2.gamma", 3) == 3 and layer_id("dist_token", 3) == 0
    from transfer.classification.optim import param_groups_lrd
    groups = param_groups_lrd(model, 0.05, model.no_weight_decay(), layer_decay=0.5)
    group = next(g for g in groups if any(p is model.reg_token for p in g["params"]))
    assert group["weight_decay"] == 0.0 and group["lr_scale"] == 0.5 ** 4  # the stem of a 3-block ViT
    tuned = set_trainable(model, "partial", 1, "mlp")
    assert "blocks.2.ls2.gamma" in tuned and "blocks.2.ls1.gamma" not in tuned and "blocks.1.ls2.gamma" not in tuned


# ---- every classification task takes every variant ---------------------------------------------------------------
def _variant_ckpts(tmp_path):
    dv2 = randomize(dinov2_vit.DinoVisionTransformer(img_size=28, patch_size=14, embed_dim=64, depth=1, num_heads=1,
                                                     init_values=1.0, num_register_tokens=2))
    deit = randomize(VisionTransformerDistilled(img_size=32, patch_size=16, embed_dim=64, depth=1, num_heads=1,
                                                num_classes=10))
    torch.save(dv2.state_dict(), tmp_path / "dinov2.pth")
    torch.save({"model": deit.state_dict()}, tmp_path / "deit.pth")
    return {"dinov2": tmp_path / "dinov2.pth", "deit": tmp_path / "deit.pth"}


@pytest.mark.parametrize("task", ["knn", "in1k_linear", "in1k_partial", "in1k_finetune"])
def test_classification_tasks_run_on_variants(synth_root, tmp_path, task):
    from benchmarks.cli import main
    from results.record import read_result, sha256_file
    from tests.test_classification import run_args
    for name, ckpt in _variant_ckpts(tmp_path).items():
        size = 28 if name == "dinov2" else 32
        extra = ["model.img_size=" + str(size)]
        if task == "in1k_partial":
            extra.append("blocks=1")
        out = tmp_path / f"{task}-{name}"
        if task == "knn":
            argv = ["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(ckpt), "--data", str(synth_root),
                    "--out", str(out), "--set", f"model.img_size={size}", "--set", "schedule.batch_size=8",
                    "--set", "runtime.device='cpu'"]
        else:
            argv = run_args(task, ckpt, synth_root, out, epochs=1, extra=extra)
        assert main(argv) == 0
        rec = read_result(out)
        assert rec["init"]["format"] == name and rec["init"]["kind"] == name
        assert rec["init"]["arch_spec"]["name"] == rec["arch"] and rec["init"]["sha256"] == sha256_file(ckpt)
        assert rec["init"]["unused"]["count"] == len(rec["init"]["unused"]["keys"]) > 0


def test_cli_unknown_format_is_one_line_before_any_work(synth_root, tmp_path, capsys):
    from benchmarks.cli import main
    odd = tmp_path / "odd.pth"
    torch.save({"net": {"w": torch.zeros(2)}}, odd)
    nan = _plain_vit(tmp_path, "nan.pth", **{"pos_embed": torch.full((1, 5, W), float("nan"))})
    for ckpt, words in ((odd, "no known format"), (nan, "non-finite")):
        out = tmp_path / f"run-{ckpt.stem}"
        code = main(["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(ckpt), "--data", str(synth_root),
                     "--out", str(out), "--set", "model.img_size=32", "--set", "runtime.device='cpu'"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and words in err[0] and str(ckpt) in err[0], err
        assert not (out / "result.json").exists()
