"""`mae-bench export --to mmseg`: an encoder in the key layout of mmsegmentation's `MAE` backbone.

The mapping is mmsegmentation's tools/model_converters/beit2mmseg.py (which its MAE configs use):
blocks.i -> layers.i, norm1/norm2 -> ln1/ln2, mlp.fc1 -> ffn.layers.0.0, mlp.fc2 -> ffn.layers.1,
patch_embed.proj -> patch_embed.projection; cls_token, pos_embed and the final norm keep their names.
mmseg's MAE layers are built with a full qkv bias (bias=True), so attn.qkv.bias is written whole (the
k part included). The backbone's own extras are absent from a pretrained encoder and are filled by
mmseg as for the official checkpoints: layer scale gamma_1/gamma_2 (init_values=1.0 in the configs)
and the zero-initialised relative position bias tables. pos_embed stays at the pretraining grid;
mmseg's MAE backbone resizes it when it loads (resize_abs_pos_embed).
"""
import os

import torch

from mae_core.checkpoint import atomic_write, load_encoder

_BLOCK_RENAMES = (("norm1.", "ln1."), ("norm2.", "ln2."), ("mlp.fc1.", "ffn.layers.0.0."), ("mlp.fc2.", "ffn.layers.1."))


def mmseg_key(key: str) -> str:
    """One timm ViT key -> its mmseg MAE backbone key."""
    if key.startswith("blocks."):
        key = "layers." + key[len("blocks."):]
        for old, new in _BLOCK_RENAMES:
            key = key.replace(old, new)
        return key
    if key.startswith("patch_embed.proj."):
        return "patch_embed.projection." + key[len("patch_embed.proj."):]
    return key


def to_mmseg(encoder: dict) -> dict:
    """A timm-named encoder state dict in mmseg's MAE backbone names."""
    return {mmseg_key(k): v for k, v in encoder.items()}


def export_mmseg(ckpt_path, out_path) -> str:
    """Write the encoder of any checkpoint (.pth, or .safetensors by extension) for mmseg's MAE backbone
    (load it with init_cfg=dict(type='Pretrained', checkpoint=FILE)); returns the arch."""
    enc, info = load_encoder(ckpt_path)
    sd = {k: v.detach().contiguous().clone() for k, v in to_mmseg(enc).items()}
    out_path = os.fspath(out_path)
    if out_path.endswith(".safetensors"):
        from safetensors.torch import save_file
        atomic_write(out_path, lambda tmp: save_file(sd, tmp, metadata={"format": "pt", "arch": info["arch"]}))
    else:
        atomic_write(out_path, lambda tmp: torch.save(sd, tmp))
    return info["arch"]
