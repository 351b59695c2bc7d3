"""`mae-bench export --to mmseg`: mmsegmentation MAE-backbone key names, checked by running them."""
import pytest
import torch
import torch.nn.functional as F

from benchmarks.cli import main
from mae_core.checkpoint import save_checkpoint
from tests.conftest import tiny_mae
from transfer.encoder import init_encoder
from transfer.segmentation.backbone import ViTBackbone


@pytest.fixture(scope="module")
def mae_ckpt(tmp_path_factory):
    mae = tiny_mae(img_size=32)
    with torch.no_grad():  # make every bias matter (MAE initialises them to zero)
        for name, p in mae.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.5)
    path = tmp_path_factory.mktemp("ckpt") / "mae.pth"
    save_checkpoint(path, mae.state_dict(), config={**mae.config, "arch": "vit_tiny_patch16"})
    return path


def expected_mmseg_keys(depth: int) -> set[str]:
    """The parameters of mmseg's MAE backbone (mmseg/models/backbones/mae.py on beit.py) that a pretrained
    file provides; gamma_1/2 and attn.relative_position_bias_table are the backbone's own."""
    keys = {"cls_token", "pos_embed", "patch_embed.projection.weight", "patch_embed.projection.bias"}
    for i in range(depth):
        for part in ("ln1", "attn.qkv", "attn.proj", "ln2", "ffn.layers.0.0", "ffn.layers.1"):
            keys |= {f"layers.{i}.{part}.weight", f"layers.{i}.{part}.bias"}
    return keys


def mmseg_layout_forward(sd: dict, x: torch.Tensor, heads: int, out_indices, drop_k_bias=False) -> list:
    """mmseg's MAE backbone forward written against the exported names (gamma = 1, relative bias = 0)."""
    w = sd["patch_embed.projection.weight"]
    x = F.conv2d(x, w, sd["patch_embed.projection.bias"], stride=w.shape[-1])
    b, c, h, wd = x.shape
    x = torch.cat([sd["cls_token"].expand(b, -1, -1), x.flatten(2).transpose(1, 2)], 1) + sd["pos_embed"]
    outs = []
    for i in range(max(out_indices) + 1):
        p = f"layers.{i}."
        y = F.layer_norm(x, (c,), sd[p + "ln1.weight"], sd[p + "ln1.bias"], eps=1e-6)
        bias = sd[p + "attn.qkv.bias"].clone()
        if drop_k_bias:
            bias[c:2 * c] = 0
        q, k, v = F.linear(y, sd[p + "attn.qkv.weight"], bias).reshape(b, -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (c // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, -1, c), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        y = F.layer_norm(x, (c,), sd[p + "ln2.weight"], sd[p + "ln2.bias"], eps=1e-6)
        y = F.linear(F.gelu(F.linear(y, sd[p + "ffn.layers.0.0.weight"], sd[p + "ffn.layers.0.0.bias"])),
                     sd[p + "ffn.layers.1.weight"], sd[p + "ffn.layers.1.bias"])
        x = x + y
        if i in out_indices:
            outs.append(x[:, 1:].transpose(1, 2).reshape(b, c, h, wd))
    return outs


def test_export_mmseg_names_and_numbers(mae_ckpt, tmp_path):
    out = tmp_path / "mmseg.pth"
    assert main(["export", "--to", "mmseg", "--ckpt", str(mae_ckpt), "--out", str(out)]) == 0
    sd = torch.load(out, weights_only=True)
    assert set(sd) == expected_mmseg_keys(12) | {"norm.weight", "norm.bias"}  # the final norm: unused (final_norm=False)
    assert sd["pos_embed"].shape == (1, 5, 192)  # pretraining grid; mmseg resizes it on load
    vit, _ = init_encoder(str(mae_ckpt), arch=None, img_size=32, num_classes=0)
    ours = ViTBackbone(vit, rel_pos_bias=True, layer_scale_init=1.0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(ours(x), mmseg_layout_forward(sd, x, 3, (3, 5, 7, 11))):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_k_bias_is_irrelevant_to_softmax_attention(mae_ckpt, tmp_path):
    """Why a BEiT-style loader (q_bias, v_bias only) loses nothing: q.(k + b_k) adds q.b_k, the same for every
    key of a query, and softmax is shift-invariant. mmseg's MAE backbone keeps the full qkv bias anyway."""
    out = tmp_path / "mmseg.pth"
    assert main(["export", "--to", "mmseg", "--ckpt", str(mae_ckpt), "--out", str(out)]) == 0
    sd = torch.load(out, weights_only=True)
    assert sd["layers.0.attn.qkv.bias"][192:384].abs().sum() > 0
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = mmseg_layout_forward(sd, x, 3, (11,))
        b = mmseg_layout_forward(sd, x, 3, (11,), drop_k_bias=True)
    torch.testing.assert_close(a[0], b[0], atol=1e-4, rtol=1e-4)


def test_export_mmseg_safetensors_and_bad_input(mae_ckpt, tmp_path):
    from safetensors.torch import load_file
    out = tmp_path / "enc.safetensors"
    assert main(["export", "--to", "mmseg", "--ckpt", str(mae_ckpt), "--out", str(out)]) == 0
    assert "layers.11.ffn.layers.1.weight" in load_file(str(out))
    assert main(["export", "--to", "mmseg", "--ckpt", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x.pth")]) == 1
    assert not (tmp_path / "x.pth").exists()
