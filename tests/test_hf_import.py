"""HF transformers ViTMAE folders load through every --ckpt reader and compute what HF computes."""
import json

import pytest
import torch

from mae_core.checkpoint import read_checkpoint
from mae_core.weights import load_encoder, load_mae
from mae_core.errors import MaeBenchError
from mae_core.hf_import import convert_state_dict
from transfer.encoder import init_encoder

transformers = pytest.importorskip("transformers")

# ViT-Tiny/16 at 32 px (2 x 2 patches) with a tiny decoder; eps 1e-6 as in official MAE (HF's configs say 1e-12).
SHAPES = dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768, image_size=32,
              patch_size=16, decoder_hidden_size=64, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
              decoder_intermediate_size=256, layer_norm_eps=1e-6, mask_ratio=0.75, norm_pix_loss=True)


@pytest.fixture(scope="module")
def hf_pretraining(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(**SHAPES)).eval()
    folder = tmp_path_factory.mktemp("hf") / "vit-mae-tiny"
    model.save_pretrained(folder)
    return model, folder


def test_pretraining_folder_loads_and_reconstructs_like_hf(hf_pretraining):
    hf, folder = hf_pretraining
    ours, info = load_mae(folder)
    assert info["arch"] == "vit_tiny_patch16" and ours.norm_pix_loss and ours.decoder_embed.out_features == 64
    imgs, noise = torch.randn(3, 3, 32, 32), torch.rand(3, 4)
    with torch.no_grad():
        expect = hf(pixel_values=imgs, noise=noise)
        loss, pred, mask = ours.eval()(imgs, mask_ratio=0.75, noise=noise)
    assert torch.equal(mask, expect.mask)
    assert torch.allclose(pred, expect.logits, atol=1e-5) and torch.allclose(loss, expect.loss, atol=1e-6)


def test_encoder_folder_is_every_task_init(tmp_path):
    torch.manual_seed(1)
    cfg = transformers.ViTMAEConfig(**{**SHAPES, "mask_ratio": 0.0})
    hf = transformers.ViTMAEModel(cfg).eval()
    hf.save_pretrained(tmp_path / "enc")
    vit, info = init_encoder(str(tmp_path / "enc"), arch=None, img_size=32, num_classes=5)
    assert info["arch"] == "vit_tiny_patch16" and info["pretrain"]["model"]["mask_ratio"] == 0.0
    imgs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # with nothing masked and noise in patch order, HF keeps the tokens in order
        expect = hf(pixel_values=imgs, noise=torch.arange(4.0).repeat(2, 1)).last_hidden_state
        got = vit.eval().forward_features(imgs)
    assert torch.allclose(got, expect, atol=1e-5)


def test_every_key_spelling_converts_to_the_same_weights(hf_pretraining):
    hf, folder = hf_pretraining
    from safetensors.torch import load_file
    on_disk, in_memory = load_file(folder / "model.safetensors"), hf.state_dict()
    assert on_disk.keys() != in_memory.keys()  # transformers 5: 4.x names in files, new names in memory
    legacy = {k.replace("decoder.decoder_encoder.layer.", "decoder.decoder_layers."): v for k, v in on_disk.items()}
    a, b, c = convert_state_dict(on_disk), convert_state_dict(in_memory), convert_state_dict(legacy)
    assert a.keys() == b.keys() == c.keys() and all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    assert a["blocks.0.attn.qkv.weight"].shape == (3 * 192, 192)
    assert torch.equal(a["blocks.0.attn.qkv.weight"][192:384], in_memory["vit.layers.0.attention.k_proj.weight"])
    assert torch.equal(a["decoder_blocks.0.mlp.fc2.bias"], in_memory["decoder.decoder_layers.0.mlp.fc2.bias"])


def test_pytorch_model_bin_and_bad_folders(hf_pretraining, tmp_path):
    hf, _ = hf_pretraining
    folder = tmp_path / "bin"  # the older single-file format: config.json + pytorch_model.bin
    folder.mkdir()
    (folder / "config.json").write_text(hf.config.to_json_string())
    torch.save(hf.state_dict(), folder / "pytorch_model.bin")
    enc, info = load_encoder(folder)
    assert info["arch"] == "vit_tiny_patch16" and "blocks.11.attn.qkv.bias" in enc
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"model_type": "vit_mae"}))
    with pytest.raises(MaeBenchError, match="no model.safetensors"):
        read_checkpoint(tmp_path / "empty")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(MaeBenchError, match="not vit_mae"):
        read_checkpoint(tmp_path / "bert")
