"""Feature rules (mae_core/feature_rules.py, `model.features=method`): each format's rule, computed on our timm
encoder loaded through `--ckpt`, equals the method's own evaluation features computed with the method's own model
code (tests/reference: DINO / iBOT's and DINOv2's get_intermediate_layers, BEiT's), as their eval scripts combine
them; the default (`paper`) leaves the encoder untouched; the linear probe and k-NN run with the option on."""

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from mae_core.archs import VitArch
from mae_core.errors import MaeBenchError
from mae_core.feature_rules import METHODS, RULES
from tests.reference import beit_vit, dinov2_vit, ibot_vit
from tests.test_formats import _dino_checkpoint, _one_line, close, images, randomize
from transfer.encoder import init_encoder

W = 128  # tests.test_formats.randomize puts the norms' weights near 1 for this width


def method_features(ckpt, size=32, probe="linear", num_classes=0, **kw):
    model, info = init_encoder(str(ckpt), arch=None, img_size=size, num_classes=num_classes, features="method",
                               probe=probe, **kw)
    model.eval()
    with torch.no_grad():  # what the linear probe's head and k-NN read (transfer/classification/features.py)
        return model.forward_head(model.forward_features(images(size)), pre_logits=True), model, info


def _dino_ref(depth):
    return randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=16, embed_dim=W, depth=depth, num_heads=2,
                                                qkv_bias=True))


@pytest.mark.filterwarnings("ignore:.*weight_norm")
def test_dino_small_rule_is_eval_linear_n4(tmp_path):
    """dino eval_linear.py (ViT-S: n_last_blocks=4, no pooling):
    torch.cat([x[:, 0] for x in model.get_intermediate_layers(inp, n)], dim=-1); on fewer blocks, all of them."""
    for depth in (5, 2):
        ref = _dino_ref(depth)
        path = tmp_path / f"dino{depth}.pth"
        torch.save(_dino_checkpoint(ref, "dino_loss"), path)
        feats, _, info = method_features(path)
        with torch.no_grad():
            expected = torch.cat([x[:, 0] for x in ref.get_intermediate_layers(images(32), 4)], dim=-1)
        close(feats, expected)
        assert info["format"] == "dino" and info["features"]["rule"] == "cls_last4"
        assert info["features"]["width"] == W * min(4, depth) and "dino eval_linear.py" in info["features"]["source"]
        knn, _, info = method_features(path, probe="knn")  # eval_knn.py: model(samples) = norm(x)[:, 0]
        close(knn, ref(images(32))[:, 0])
        assert info["features"]["rule"] == "cls"


@pytest.mark.filterwarnings("ignore:.*weight_norm")
def test_dino_base_rule_interleaves_the_patch_mean(tmp_path):
    """dino eval_linear.py (ViT-B: n=1, avgpool_patchtokens): the class token and the patch mean, interleaved by its
    cat((output.unsqueeze(-1), mean.unsqueeze(-1)), -1).reshape(B, -1)."""
    assert METHODS["DINO"].rule("linear", VitArch(16, 768, 12, 12)).name == "dino_cls_avg"
    assert METHODS["DINO"].rule("linear", VitArch(16, 384, 12, 6)).name == "cls_last4"
    ref = _dino_ref(2)
    path = tmp_path / "dino.pth"
    torch.save(_dino_checkpoint(ref, "dino_loss"), path)
    model, _ = init_encoder(str(path), arch=None, img_size=32, num_classes=0)
    with torch.no_grad():
        ours = RULES["dino_cls_avg"](model.eval(), images(32))
        inter = ref.get_intermediate_layers(images(32), 1)
        output = torch.cat([x[:, 0] for x in inter], dim=-1)
        output = torch.cat((output.unsqueeze(-1), torch.mean(inter[-1][:, 1:], dim=1).unsqueeze(-1)), dim=-1)
        expected = output.reshape(output.shape[0], -1)
    close(ours, expected)


@pytest.mark.filterwarnings("ignore:.*weight_norm")
def test_ibot_rule_concatenates_the_patch_mean(tmp_path):
    """ibot evaluation/eval_linear.py with run.sh's non-small setting (n_last_blocks=1, avgpool_patchtokens=2):
    [x[:, 0] for x in intermediate_output] + [torch.mean(intermediate_output[-1][:, 1:], dim=1)], concatenated."""
    assert METHODS["iBOT"].rule("linear", VitArch(16, 384, 12, 6)).name == "cls_last4"
    ref = randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=16, embed_dim=W, depth=2, num_heads=2,
                                               qkv_bias=True, init_values=0.1, masked_im_modeling=True))
    path = tmp_path / "checkpoint.pth"
    torch.save(_dino_checkpoint(ref, "ibot_loss", "vit_base"), path)
    feats, _, info = method_features(path)
    with torch.no_grad():
        inter = ref.get_intermediate_layers(images(32), 1)
        expected = torch.cat([x[:, 0] for x in inter] + [torch.mean(inter[-1][:, 1:], dim=1)], dim=-1)
    close(feats, expected)
    assert info["format"] == "ibot" and info["features"]["rule"] == "cls_avg" and info["features"]["width"] == 2 * W


def create_linear_input(x_tokens_list, use_n_blocks, use_avgpool):
    """facebookresearch/dinov2 dinov2/eval/linear.py, verbatim (Apache-2.0)."""
    intermediate_output = x_tokens_list[-use_n_blocks:]
    output = torch.cat([class_token for _, class_token in intermediate_output], dim=-1)
    if use_avgpool:
        output = torch.cat(
            (
                output,
                torch.mean(intermediate_output[-1][0], dim=1),  # patch tokens
            ),
            dim=-1,
        )
        output = output.reshape(output.shape[0], -1)
    return output.float()


def _dinov2(tmp_path, depth, regs=2):
    ref = randomize(dinov2_vit.DinoVisionTransformer(img_size=28, patch_size=14, embed_dim=W, depth=depth, num_heads=2,
                                                     init_values=1.0, num_register_tokens=regs))
    path = tmp_path / f"dinov2_d{depth}_r{regs}.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


@pytest.mark.parametrize("regs", [0, 2])
def test_dinov2_rule_is_the_linear4_head_input(tmp_path, regs):
    """dinov2 linear.py: ModelWithIntermediateLayers (get_intermediate_layers(n=4, return_class_token=True), each
    block normed) and create_linear_input(use_n_blocks=4, use_avgpool=True); registers left out of the patch mean."""
    ref, path = _dinov2(tmp_path, 4, regs)
    feats, model, info = method_features(path, size=28, num_classes=7)
    with torch.no_grad():
        expected = create_linear_input(ref.get_intermediate_layers(images(28), 4, return_class_token=True), 4, True)
        assert model(images(28)).shape == (2, 7)  # the classifier's input width follows the rule
    close(feats, expected)
    assert info["features"] == {"option": "method", "rule": "cls_last4_avg", "width": 5 * W,
                                "source": RULES["cls_last4_avg"].source}
    assert model.head.in_features == 5 * W and info["method"] == "DINOv2"
    knn, _, info = method_features(path, size=28, probe="knn")  # dinov2/eval/knn.py: x_norm_clstoken
    close(knn, ref.forward_features(images(28))["x_norm_clstoken"])


def test_beit_rule_is_run_linear_eval_on_the_last_block(tmp_path):
    """unilm beit/run_linear_eval.py: for a block's output of get_intermediate_layers (no final norm),
    torch.cat((each_layer[:, 0], torch.mean(each_layer[:, 1:], dim=1)), dim=-1); we read the last block."""
    from tests.test_formats_beit import LN, PATCH
    from tests.test_formats_beit import randomize as beit_randomize
    ref = beit_randomize(beit_vit.VisionTransformer(img_size=32, patch_size=PATCH, embed_dim=64, depth=2, num_heads=2,
                                                    qkv_bias=True, norm_layer=LN, num_classes=10, init_values=0.1,
                                                    use_rel_pos_bias=True, use_abs_pos_emb=False))
    path = tmp_path / "beit_base_patch16_224_pt22k_ft22kto1k.pth"
    torch.save({"model": ref.state_dict()}, path)
    feats, _, info = method_features(path)
    with torch.no_grad():
        last = ref.get_intermediate_layers(images(32))[-1]
        expected = torch.cat((last[:, 0], torch.mean(last[:, 1:], dim=1)), dim=-1)
    close(feats, expected)
    assert info["format"] == "beit" and info["features"]["rule"] == "beit_last_cls_avg"


def test_class_token_methods_read_what_paper_reads(tmp_path):
    """MoCo v3 (main_lincls.py), DeiT, MAE: the class token after the final norm, the paper's own reading: the
    model is left as built, so its numbers are those of model.features=paper."""
    ref = randomize(VisionTransformer(img_size=32, patch_size=16, embed_dim=W, depth=2, num_heads=2, num_classes=10))
    path = tmp_path / "deit.pth"
    torch.save({"model": ref.state_dict()}, path)
    feats, model, info = method_features(path)
    paper, _ = init_encoder(str(path), arch=None, img_size=32, num_classes=0)
    assert type(model) is type(paper) is VisionTransformer and info["features"]["rule"] == "cls"
    with torch.no_grad():
        close(feats, ref.forward_features(images(32))[:, 0])
        assert torch.equal(feats, paper.eval().forward_head(paper.forward_features(images(32)), pre_logits=True))
    assert paper_info(path)["features"] == {"option": "paper", "rule": "cls", "width": W}


def paper_info(path, **kw):
    return init_encoder(str(path), arch=None, img_size=32, num_classes=0, probe="linear", **kw)[1]


def test_refusals_are_one_line(tmp_path):
    _, path = _dinov2(tmp_path, 2)
    with pytest.raises(MaeBenchError) as e:  # DINOv2's code asserts it has the 4 blocks it reads
        method_features(path, size=28)
    _one_line(e, "cls_last4_avg", "last 4 blocks", "has 2")
    with pytest.raises(MaeBenchError) as e:
        init_encoder(str(path), arch=None, img_size=28, num_classes=0, features="dino", probe="knn")
    _one_line(e, "model.features must be one of paper, method")
    with pytest.raises(MaeBenchError) as e:
        init_encoder("scratch", arch="vit_tiny_patch16", img_size=32, num_classes=0, features="method", probe="knn")
    _one_line(e, "scratch", "records no method feature rule")
    with pytest.raises(MaeBenchError) as e:
        init_encoder(str(path), arch=None, img_size=28, num_classes=0, features="method", global_pool="avg",
                     probe="linear")
    _one_line(e, "global_pool")
    with pytest.raises(MaeBenchError) as e:
        init_encoder(str(path), arch=None, img_size=28, num_classes=0, features="method", probe="finetune")
    _one_line(e, "linear probe and k-NN")
    with pytest.raises(MaeBenchError) as e:  # ViTDet / UperNet read every token: no probe, no method rule
        init_encoder(str(path), arch=None, img_size=28, num_classes=0, features="method")
    _one_line(e, "linear probe and k-NN")
    _, info = init_encoder(str(path), arch=None, img_size=28, num_classes=0)
    assert "features" not in info


def test_hf_data2vec_has_no_method_rule(tmp_path):
    from mae_core.formats import FORMATS
    assert FORMATS["hf_data2vec"].features is None and FORMATS["hf_data2vec"].method == "data2vec"
    assert {n for n, f in FORMATS.items() if f.features is None} == {"hf_data2vec"}


@pytest.mark.parametrize("task", ["in1k_linear", "knn", "in1k_partial"])
def test_linear_probe_and_knn_run_with_method_features(synth_root, tmp_path, task):
    """One short run each (in1k_partial with blocks=0: the linear probe)."""
    from benchmarks.cli import main
    from results.record import read_result
    from tests.test_classification import run_args
    _, path = _dinov2(tmp_path, 4, regs=2)
    out = tmp_path / task
    k0 = ["blocks=0", "linear_probe.schedule.batch_size=8", "linear_probe.schedule.warmup_epochs=1"]
    extra = ["model.img_size=28", "model.features=method", *(k0 if task == "in1k_partial" else [])]
    if task == "knn":
        argv = ["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(path), "--data", str(synth_root),
                "--out", str(out), *[a for s in [*extra, "schedule.batch_size=8", "runtime.device='cpu'"]
                                     for a in ("--set", s)]]
    else:
        argv = run_args(task, path, synth_root, out, epochs=1, extra=[*extra, "runtime.cache_features=True",
                                                                       "data.augment=none"])
    assert main(argv) == 0
    rec = read_result(out)
    assert rec["init"]["format"] == "dinov2" and rec["init"]["method"] == "DINOv2"
    want = "cls" if task == "knn" else "cls_last4_avg"
    assert rec["init"]["features"]["option"] == "method" and rec["init"]["features"]["rule"] == want
    assert rec["recipe"]["model"]["features"] == "method"


def test_unknown_option_is_refused_by_the_recipe_check(synth_root, tmp_path, capsys):
    from benchmarks.cli import main
    _, path = _dinov2(tmp_path, 4)
    code = main(["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(path), "--data", str(synth_root),
                 "--out", str(tmp_path / "o"), "--set", "model.features=dino"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "features" in err[0] and "paper, method" in err[0], err
    assert not (tmp_path / "o" / "result.json").exists()


@pytest.mark.parametrize("name", ["Dinov2", "Dinov2WithRegisters"])
def test_hf_dinov2_folders_take_the_dinov2_rule(tmp_path, name):
    """The same rule through HF's Dinov2Model: its hidden states of the last 4 layers through its final layernorm,
    class tokens and the last layer's patch mean (registers left out), as create_linear_input concatenates them."""
    transformers = pytest.importorskip("transformers")
    extra = {"num_register_tokens": 2} if name.endswith("Registers") else {}
    config = getattr(transformers, f"{name}Config")(hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
                                                    intermediate_size=128, image_size=28, patch_size=14, **extra)
    hf = getattr(transformers, f"{name}Model")(config)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.ndim == 1 else 0.0))
    hf.eval().save_pretrained(tmp_path / "hf")
    feats, _, info = method_features(tmp_path / "hf", size=28)
    with torch.no_grad():
        states = hf(pixel_values=images(28), output_hidden_states=True).hidden_states[-4:]
        normed = [hf.layernorm(h) for h in states]
        first_patch = 1 + extra.get("num_register_tokens", 0)
        expected = torch.cat([h[:, 0] for h in normed] + [normed[-1][:, first_patch:].mean(1)], dim=-1)
    close(feats, expected)
    assert info["format"] == "hf_dinov2" and info["features"]["rule"] == "cls_last4_avg"
