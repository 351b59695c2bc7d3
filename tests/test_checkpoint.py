import argparse
import os
import pickle

import pytest
import timm
import torch

from mae_core.atomic import atomic_write
from mae_core.checkpoint import read_checkpoint, save_checkpoint
from mae_core.errors import MaeBenchError
from mae_core.export import export_timm
from mae_core.models_mae import create_mae
from mae_core.weights import encoder_state_dict, extract_state_dict, infer_mae_arch, load_encoder, load_mae

TINY = dict(img_size=32, decoder_depth=1, decoder_embed_dim=64, decoder_num_heads=4)


@pytest.fixture
def mae():
    torch.manual_seed(0)
    return create_mae("vit_tiny_patch16", **TINY).eval()


def _official(sd, path, **args):
    ns = argparse.Namespace(model="mae_vit_tiny_patch16", norm_pix_loss=True, input_size=32, mask_ratio=0.75,
                            output_dir="./out", device="cuda", **args)
    torch.save({"model": sd, "args": ns, "epoch": 3}, path)


def _one_line(exc_info, *phrases):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for phrase in phrases:
        assert phrase in msg, msg
    return msg


# ---- round trips -----------------------------------------------------------------------
def test_round_trip_bitwise(mae, tmp_path):
    path = tmp_path / "ckpt.pth"
    opt = torch.optim.AdamW(mae.parameters(), lr=1e-3, betas=(0.9, 0.95))
    save_checkpoint(path, mae.state_dict(), optimizer=opt, epoch=5, config=mae.config, extra={"best": 0.5})
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pth"]
    raw = read_checkpoint(path)
    assert raw["epoch"] == 5 and raw["best"] == 0.5 and raw["config"] == mae.config and raw["scaler"] is None
    assert raw["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    model, info = load_mae(path)
    assert info["arch"] == "vit_tiny_patch16" and info["epoch"] == 5
    assert model.config == mae.config  # decoder_num_heads=4 comes from the config, not the shape guess
    for k, v in mae.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    x = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mae(x, 0.75, noise)[1], model.eval()(x, 0.75, noise)[1])


def test_save_validates_config(mae, tmp_path):
    with pytest.raises(TypeError, match="plain data"):
        save_checkpoint(tmp_path / "c.pth", mae.state_dict(), config={"dev": torch.device("cpu")})
    with pytest.raises(ValueError, match="overwrite"):
        save_checkpoint(tmp_path / "c.pth", mae.state_dict(), extra={"epoch": 1})
    assert not os.listdir(tmp_path)


def test_atomic_write_keeps_old_file_on_failure(mae, tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, mae.state_dict(), epoch=1)
    before = path.read_bytes()

    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pth"]
    assert read_checkpoint(path)["epoch"] == 1


def test_copy_atomic_links_then_survives_a_rewrite_of_its_source(mae, tmp_path, monkeypatch):
    from mae_core import atomic
    last, numbered = tmp_path / "checkpoint-last.pth", tmp_path / "checkpoint-3.pth"
    save_checkpoint(last, mae.state_dict(), epoch=3)
    atomic.copy_atomic(last, numbered)
    assert numbered.stat().st_ino == last.stat().st_ino  # one copy of the bytes on disk
    save_checkpoint(last, mae.state_dict(), epoch=4)  # replaced, not edited: the numbered file keeps epoch 3
    assert read_checkpoint(numbered)["epoch"] == 3 and read_checkpoint(last)["epoch"] == 4
    monkeypatch.setattr(atomic.os, "link", lambda *a: (_ for _ in ()).throw(OSError("no links here")))
    atomic.copy_atomic(last, tmp_path / "checkpoint-4.pth")  # file systems without hard links: a byte copy
    assert (tmp_path / "checkpoint-4.pth").read_bytes() == last.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-3.pth", "checkpoint-4.pth", "checkpoint-last.pth"]


def test_resize_on_img_size_override(mae, tmp_path):
    save_checkpoint(tmp_path / "c.pth", mae.state_dict(), config=mae.config)
    model, info = load_mae(tmp_path / "c.pth", img_size=64)
    assert model.pos_embed.shape == (1, 17, 192) and model.decoder_pos_embed.shape == (1, 17, 64)
    assert info["img_size"] == 64
    enc, info = load_encoder(tmp_path / "c.pth", img_size=48)
    assert enc["pos_embed"].shape == (1, 10, 192) and info["grid"] == (3, 3)


# ---- official MAE layout ---------------------------------------------------------------
def test_official_full_and_encoder_only(mae, tmp_path):
    sd = {k: v.clone() for k, v in mae.state_dict().items()}
    _official(sd, tmp_path / "full.pth")
    raw = read_checkpoint(tmp_path / "full.pth")
    assert isinstance(raw["args"], argparse.Namespace) and raw["args"].input_size == 32
    info = infer_mae_arch(extract_state_dict(raw))
    assert info["arch"] == "vit_tiny_patch16" and info["has_decoder"] and info["grid"] == (2, 2)
    assert (info["decoder_embed_dim"], info["decoder_depth"], info["num_heads"]) == (64, 1, 3)
    model, _ = load_mae(tmp_path / "full.pth")
    assert model.norm_pix_loss is True
    assert torch.equal(model.blocks[0].attn.qkv.weight, mae.blocks[0].attn.qkv.weight)

    enc_only = encoder_state_dict(sd)
    assert not any(k.startswith(("decoder", "mask_token")) for k in enc_only)
    _official(enc_only, tmp_path / "enc.pth")
    info = infer_mae_arch(extract_state_dict(read_checkpoint(tmp_path / "enc.pth")))
    assert info["arch"] == "vit_tiny_patch16" and not info["has_decoder"]
    with pytest.raises(MaeBenchError) as e:
        load_mae(tmp_path / "enc.pth")
    _one_line(e, "enc.pth", "encoder only")
    enc, info = load_encoder(tmp_path / "enc.pth", arch="vit_tiny_patch16")
    assert set(enc) == set(enc_only) and info["img_size"] == 32


def test_ddp_prefix_and_mask_tokens_in_encoder(tmp_path):
    m = create_mae("vit_tiny_patch16", mask_tokens_in_encoder=True, **TINY)
    torch.save({"model": {f"module.{k}": v for k, v in m.state_dict().items()}}, tmp_path / "ddp.pth")
    info = infer_mae_arch(extract_state_dict(read_checkpoint(tmp_path / "ddp.pth")))
    assert info["mask_tokens_in_encoder"]
    model, _ = load_mae(tmp_path / "ddp.pth", decoder_num_heads=4)
    assert model.mask_tokens_in_encoder and "encoder_mask_token" not in load_encoder(tmp_path / "ddp.pth")[0]


# ---- timm --------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".pth", ".safetensors"])
def test_export_timm_matches_encoder(mae, tmp_path, ext):
    save_checkpoint(tmp_path / "c.pth", mae.state_dict(), config=mae.config)
    out = tmp_path / f"vit{ext}"
    assert export_timm(tmp_path / "c.pth", out) == "vit_tiny_patch16"
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32).eval()
    sd = read_checkpoint(out)
    sd = sd["model"] if ext == ".safetensors" else sd
    vit.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        latent, _, _ = mae.forward_encoder(x, mask_ratio=0.0, noise=torch.arange(4).expand(2, 4).float())
        torch.testing.assert_close(vit.forward_features(x), latent, atol=1e-5, rtol=0)
    enc, info = load_encoder(out)
    assert info["arch"] == "vit_tiny_patch16" and set(enc) == set(vit.state_dict())


def test_timm_state_dict_with_head(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32)
    torch.save(vit.state_dict(), tmp_path / "timm.pth")
    enc, info = load_encoder(tmp_path / "timm.pth")
    assert info["arch"] == "vit_tiny_patch16" and not info["has_decoder"] and info["grid"] == (2, 2)
    assert not any(k.startswith("head") for k in enc)
    headless = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    headless.load_state_dict(enc, strict=True)


def test_safetensors_round_trip(mae, tmp_path):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in mae.state_dict().items()}, tmp_path / "m.safetensors")
    raw = read_checkpoint(tmp_path / "m.safetensors")
    assert set(raw) == {"model"} and torch.equal(raw["model"]["pos_embed"], mae.pos_embed)
    enc, info = load_encoder(tmp_path / "m.safetensors", arch="mae_vit_tiny_patch16")
    assert info["has_decoder"] and torch.equal(enc["cls_token"], mae.cls_token)


# ---- bad inputs ------------------------------------------------------------------------
class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


class _Custom:
    pass


def test_missing_and_directory(tmp_path):
    with pytest.raises(MaeBenchError) as e:
        read_checkpoint(tmp_path / "nope.pth")
    _one_line(e, "checkpoint not found", "nope.pth")
    with pytest.raises(MaeBenchError) as e:
        load_mae(tmp_path)
    _one_line(e, "is a directory")


def test_corrupt_files(mae, tmp_path):
    save_checkpoint(tmp_path / "ok.pth", mae.state_dict())
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "rand.pth").write_bytes(os.urandom(4096))
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "rand.safetensors").write_bytes(os.urandom(100))
    for name in ("rand.pth", "empty.pth", "rand.safetensors"):
        with pytest.raises(MaeBenchError) as e:
            read_checkpoint(tmp_path / name)
        _one_line(e, f"cannot read checkpoint {tmp_path / name}", "not a PyTorch or safetensors file")
    # a file cut short says so, in every format, wherever it was cut
    from safetensors.torch import save_file
    save_file(mae.state_dict(), tmp_path / "ok.safetensors")
    torch.save(mae.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("ok.pth", "ok.safetensors", "legacy.pth"):
        data = (tmp_path / name).read_bytes()
        for cut in (12, 200, len(data) // 2, len(data) - 20, len(data) - 1):
            (tmp_path / f"cut-{name}").write_bytes(data[:cut])
            with pytest.raises(MaeBenchError) as e:
                read_checkpoint(tmp_path / f"cut-{name}")
            _one_line(e, f"cannot read checkpoint {tmp_path / f'cut-{name}'}", "truncated")
        assert read_checkpoint(tmp_path / name)  # the whole file reads


def test_an_empty_model_entry_beside_the_state_dict_is_passed_over(mae):
    sd = mae.state_dict()
    assert extract_state_dict({"model": {}, "state_dict": sd}).keys() == sd.keys()
    assert extract_state_dict({"model": {"step": 3}, "model_ema": sd}).keys() == sd.keys()
    with pytest.raises(MaeBenchError, match="holds no weights"):
        extract_state_dict({"model": {}, "state_dict": {}})


@pytest.mark.parametrize("how", ["torch", "pickle2", "pickle4"])
def test_code_running_pickle_is_refused(tmp_path, how):
    target = tmp_path / "SOMEFILE"
    path = tmp_path / "evil.pth"
    payload = {"x": _Evil(target), "model": {"w": torch.zeros(1)}}  # the code-running global comes first
    if how == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    with pytest.raises(MaeBenchError) as e:
        load_mae(path)
    if how != "pickle4":  # protocol 4 frames stop torch's unpickler before it reads any global
        _one_line(e, "refusing to load", "`os.system`", "allow-list")
    assert "evil.pth" in str(e.value)
    assert not target.exists()


def test_custom_class_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "obj": _Custom()}, tmp_path / "c.pth")
    with pytest.raises(MaeBenchError) as e:
        read_checkpoint(tmp_path / "c.pth")
    _one_line(e, "refusing to load", "_Custom", "not on the allow-list")


def test_not_a_vit(tmp_path):
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64),
              "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3), "fc.weight": torch.zeros(10, 512)}
    torch.save({"state_dict": resnet}, tmp_path / "resnet.pth")
    with pytest.raises(MaeBenchError) as e:
        load_encoder(tmp_path / "resnet.pth")
    _one_line(e, "resnet.pth", "does not hold a ViT encoder", "conv1.weight")
    torch.save({"epoch": 1, "args": argparse.Namespace(lr=1.0)}, tmp_path / "empty.pth")
    with pytest.raises(MaeBenchError) as e:
        load_encoder(tmp_path / "empty.pth")
    _one_line(e, "holds no weights")


def test_unknown_vit_shape(tmp_path):
    m = create_mae("vit_tiny_patch16", img_size=32, embed_dim=100, num_heads=4, depth=2,
                   decoder_depth=1, decoder_embed_dim=64, decoder_num_heads=4)
    save_checkpoint(tmp_path / "odd.pth", m.state_dict())
    with pytest.raises(MaeBenchError) as e:
        load_mae(tmp_path / "odd.pth")
    _one_line(e, "odd.pth", "unknown ViT", "width 100", "depth 2")


def test_arch_disagreement(mae, tmp_path):
    save_checkpoint(tmp_path / "c.pth", mae.state_dict())
    with pytest.raises(MaeBenchError) as e:
        load_encoder(tmp_path / "c.pth", arch="vit_small_patch16")
    _one_line(e, "is vit_tiny_patch16 but --arch says vit_small_patch16")


def test_mismatch_names_keys(mae, tmp_path):
    sd = dict(mae.state_dict())
    del sd["norm.weight"]
    sd["extra.weight"] = torch.zeros(1)
    save_checkpoint(tmp_path / "c.pth", sd, config=mae.config)
    with pytest.raises(MaeBenchError) as e:
        load_mae(tmp_path / "c.pth")
    _one_line(e, "does not fit", "missing: norm.weight", "unexpected: extra.weight")
    save_checkpoint(tmp_path / "d.pth", mae.state_dict())
    with pytest.raises(MaeBenchError) as e:
        load_mae(tmp_path / "d.pth", mlp_ratio=2.0)
    _one_line(e, "shape: blocks.0.mlp.fc1.weight")


def test_pretrain_summary_reads_ours_and_official_and_nothing_else():
    import argparse

    from mae_core.weights import pretrain_summary
    recipe = {"model": {"mask_ratio": 0.6, "mask_strategy": "block", "decoder_depth": 2, "decoder_embed_dim": 128,
                        "norm_pix_loss": True, "mask_tokens_in_encoder": False, "img_size": 64},
              "schedule": {"epochs": 40, "batch_size": 32, "accum_iter": 1}, "data": {"augment": "rrc", "subset": None}}
    ours = pretrain_summary({"model": {}, "epoch": 9, "config": {"arch": "vit_tiny_patch16", "recipe": recipe}})
    assert ours["model"]["mask_ratio"] == 0.6 and ours["model"]["mask_strategy"] == "block"
    assert ours["schedule"]["epochs"] == 40 and ours["data"]["augment"] == "rrc" and ours["epochs_done"] == 10
    from mae_core.pretrain_knobs import PRETRAIN_AXES  # every knob the tables compare is one the summary records
    assert {col: ours[section][key] for col, (section, key) in PRETRAIN_AXES.items()} == \
        {col: recipe[section][key] for col, (section, key) in PRETRAIN_AXES.items()}
    official = pretrain_summary({"model": {}, "epoch": 799, "args": argparse.Namespace(
        mask_ratio=0.75, norm_pix_loss=True, input_size=224, epochs=800, batch_size=64, accum_iter=1)})
    assert official["model"] == {"mask_ratio": 0.75, "norm_pix_loss": True, "input_size": 224}
    assert official["epochs_done"] == 800
    assert pretrain_summary({"model": {}}) is None  # timm / supervised / encoder-only
    assert pretrain_summary({"model": {}, "config": {"task": "in1k_finetune", "recipe": {"model": {}}}}) is None
