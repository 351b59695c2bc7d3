import pytest
import torch

from mae_core.checkpoint import save_checkpoint
from mae_core.weights import encoder_state_dict
from mae_core.errors import MaeBenchError
from mae_core.models import create_mae
from transfer.encoder import InitSpec, build_vit, init_encoder, parse_init

TINY = "vit_tiny_patch16"


@pytest.fixture(scope="module")
def mae_ckpt(tmp_path_factory):
    """A tiny 32-px MAE (2 x 2 patches) and its pretraining checkpoint."""
    torch.manual_seed(0)
    mae = create_mae(TINY, img_size=32, decoder_depth=1, decoder_embed_dim=64, decoder_num_heads=4)
    path = tmp_path_factory.mktemp("enc") / "mae.pth"
    save_checkpoint(path, mae.state_dict(), config=mae.config)
    return mae.eval(), path


# ---- parse_init ----------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("scratch", InitSpec("scratch", None)),
    ("mae:runs/a/checkpoint.pth", InitSpec("mae", "runs/a/checkpoint.pth")),
    ("supervised:vit.safetensors", InitSpec("supervised", "vit.safetensors")),
    ("runs/a/checkpoint-99.pth", InitSpec("mae", "runs/a/checkpoint-99.pth")),
    ("/abs/dir:with/colon.pth", InitSpec("mae", "/abs/dir:with/colon.pth")),
])
def test_parse_init_forms(spec, expected):
    assert parse_init(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("", "empty"),
    ("mae:", "no checkpoint file"),
    ("supervised:", "no checkpoint file"),
    ("hub:vit_base", "unknown prefix 'hub:'"),
    ("scratch:vit_base_patch16", "scratch takes no path"),
])
def test_parse_init_errors(spec, message):
    with pytest.raises(MaeBenchError, match=message):
        parse_init(spec)


def test_parse_init_existing_file_with_colon(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt:1.pth").write_bytes(b"")
    assert parse_init("ckpt:1.pth") == InitSpec("mae", "ckpt:1.pth")


# ---- build_vit -----------------------------------------------------------------------

def test_build_vit_arch_missing_from_timm():
    model = build_vit("vit_tiny_patch14", img_size=28, num_classes=4)  # timm has no vit_tiny_patch14_224
    assert model.patch_embed.proj.weight.shape == (192, 3, 14, 14)
    assert model.norm.eps == 1e-6 and model.blocks[0].norm1.eps == 1e-6
    assert model(torch.randn(1, 3, 28, 28)).shape == (1, 4)
    assert model.head.bias.abs().sum() == 0 and model.head.weight.std() < 1e-4


@pytest.mark.parametrize("arch,dim,depth,heads", [("vit_tiny_patch8", 192, 12, 3), ("vit_micro_patch8", 128, 6, 4)])
def test_patch8_encoders_give_64px_images_an_8x8_grid_and_are_inferred_from_a_checkpoint(tmp_path, arch, dim, depth,
                                                                                           heads):
    mae = create_mae(arch, img_size=64, decoder_depth=1, decoder_embed_dim=64, decoder_num_heads=4)
    path = tmp_path / "mae8.pth"
    save_checkpoint(path, mae.state_dict(), config=mae.config)
    model, info = init_encoder(str(path), arch=None, img_size=64, num_classes=0)
    assert info["arch"] == arch and model.patch_embed.grid_size == (8, 8)
    assert model.pos_embed.shape == (1, 65, dim) and len(model.blocks) == depth
    assert model.blocks[0].attn.num_heads == heads


def test_build_vit_errors():
    with pytest.raises(MaeBenchError, match="unknown architecture"):
        build_vit("vit_gigantic_patch16", 32, 2)
    with pytest.raises(MaeBenchError, match="global_pool"):
        build_vit(TINY, 32, 2, global_pool="max")
    with pytest.raises(MaeBenchError, match="multiple"):
        build_vit(TINY, 40, 2)


# ---- init_encoder --------------------------------------------------------------------

def test_mae_token_pool_equals_mae_encoder(mae_ckpt):
    mae, path = mae_ckpt
    model, info = init_encoder(str(path), arch=None, img_size=32, num_classes=5)
    expected = encoder_state_dict(mae.state_dict())
    got = model.state_dict()
    assert set(expected) == set(got) - {"head.weight", "head.bias"}
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    n = 4
    with torch.no_grad():
        ref = mae.forward_encoder(x, 0.0, torch.arange(n).float().expand(2, n))[0]
        feats = model.forward_features(x)
        assert torch.allclose(feats, ref, atol=1e-5)
        assert model(x).shape == (2, 5)
    base = {"kind": "mae", "ckpt": str(path), "arch": TINY, "img_size": 32, "global_pool": "token"}
    assert {k: info[k] for k in base} == base
    assert info["format"] == "mae" and info["arch_spec"]["name"] == TINY
    assert set(info["dropped"]) == {k for k in mae.state_dict() if k.startswith("decoder_") or k == "mask_token"}


def test_mae_avg_pool_drops_norm(mae_ckpt):
    mae, path = mae_ckpt
    model, info = init_encoder(f"mae:{path}", arch=TINY, img_size=32, num_classes=5, global_pool="avg")
    keys = model.state_dict()
    assert "norm.weight" not in keys and "fc_norm.weight" in keys
    assert torch.equal(keys["fc_norm.weight"], torch.ones(192))  # fresh, as in the official fine-tuning
    assert torch.equal(keys["blocks.11.mlp.fc2.weight"], mae.state_dict()["blocks.11.mlp.fc2.weight"])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert info["global_pool"] == "avg"


def test_mae_pos_embed_resized(mae_ckpt):
    mae, path = mae_ckpt
    model, info = init_encoder(str(path), arch=None, img_size=64, num_classes=3, drop_path_rate=0.1)
    assert model.pos_embed.shape == (1, 1 + 16, 192)
    assert torch.equal(model.pos_embed[:, 0], mae.pos_embed[:, 0])  # the class token's entry is kept as is
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert info["img_size"] == 64


def test_supervised_timm_state_dict(tmp_path):
    vit = build_vit(TINY, img_size=32, num_classes=10)
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    model, info = init_encoder(f"supervised:{path}", arch=None, img_size=32, num_classes=3)
    assert model.head.out_features == 3
    assert torch.equal(model.blocks[3].attn.qkv.weight, vit.blocks[3].attn.qkv.weight)
    assert torch.equal(model.norm.weight, vit.norm.weight)
    assert info["kind"] == "supervised" and info["arch"] == TINY


def test_scratch():
    with pytest.raises(MaeBenchError, match="--ckpt scratch needs --arch"):
        init_encoder("scratch", arch=None, img_size=32, num_classes=2)
    model, info = init_encoder("scratch", arch="vit_small_patch16", img_size=32, num_classes=7)
    assert model.pos_embed.shape == (1, 5, 384) and model.head.out_features == 7
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    assert info == {"kind": "scratch", "ckpt": None, "arch": "vit_small_patch16", "img_size": 32,
                    "global_pool": "token"}


def test_arch_mismatch(mae_ckpt):
    _, path = mae_ckpt
    with pytest.raises(MaeBenchError, match="vit_tiny_patch16"):
        init_encoder(str(path), arch="vit_small_patch16", img_size=32, num_classes=2)


def test_checkpoint_missing_encoder_keys(mae_ckpt, tmp_path):
    mae, _ = mae_ckpt
    sd = {k: v for k, v in mae.state_dict().items() if not k.startswith(("blocks.2.attn.", "norm."))}
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(MaeBenchError, match=r"missing: blocks\.2\.attn\.qkv\.weight"):
        init_encoder(str(path), arch=None, img_size=32, num_classes=2)
