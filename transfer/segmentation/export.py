"""`mae-bench export --to mmseg`: an encoder in the key layout of mmsegmentation's `MAE` backbone.

The mapping is mmsegmentation's tools/model_converters/beit2mmseg.py (which its MAE configs use):
blocks.i -> layers.i, norm1/norm2 -> ln1/ln2, mlp.fc1 -> ffn.layers.0.0, mlp.fc2 -> ffn.layers.1,
patch_embed.proj -> patch_embed.projection; cls_token, pos_embed and the final norm keep their names.
mmseg's MAE layers are built with a full qkv bias (bias=True), so attn.qkv.bias is written whole (the
k part included). The backbone's own extras are absent from a pretrained encoder and are filled by
mmseg as for the official checkpoints: layer scale gamma_1/gamma_2 (init_values=1.0 in the configs)
and the zero-initialised relative position bias tables. pos_embed stays at the pretraining grid;
mmseg's MAE backbone resizes it when it loads (resize_abs_pos_embed).

A trained segmenter (`RUN/model_final.pth` of `ade20k_seg`) is written whole in the names of mmseg's
EncoderDecoder (MAE + Feature2Pyramid + UPerHead + FCNHead), loadable with mmengine's `load_checkpoint`:
backbone.vit.<timm key> -> backbone.<key above> (layer scale ls1/ls2.gamma -> gamma_1/gamma_2);
neck.ops.0.* -> neck.upsample_4x.*, neck.ops.1.* -> neck.upsample_2x.0.*; in the heads every ConvModule
(psp_modules.i.1, bottleneck, lateral_convs.i, fpn_convs.i, fpn_bottleneck, convs.i) maps its .0 (conv)
and .1 (BN) to .conv and .bn; conv_seg keeps its name.
"""
import re

from mae_core.checkpoint import read_checkpoint
from mae_core.weights import load_encoder
from transfer.encoder import refuse_variants
from mae_core.export import write_weights

_BLOCK_RENAMES = (("norm1.", "ln1."), ("norm2.", "ln2."), ("mlp.fc1.", "ffn.layers.0.0."), ("mlp.fc2.", "ffn.layers.1."),
                  ("ls1.gamma", "gamma_1"), ("ls2.gamma", "gamma_2"))
_CONV_MODULE = re.compile(r"^((?:decode_head|auxiliary_head)\.(?:psp_modules\.\d+\.1|bottleneck|lateral_convs\.\d+|"
                          r"fpn_convs\.\d+|fpn_bottleneck|convs\.\d+))\.([01])\.")


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


def segmenter_to_mmseg(state_dict: dict) -> dict:
    """Our Segmenter's state dict in the names of mmseg's EncoderDecoder (the head mapping above)."""
    out = {}
    for key, v in state_dict.items():
        if key.startswith("backbone.vit."):
            key = "backbone." + mmseg_key(key[len("backbone.vit."):])
        elif key.startswith("neck.ops.0."):
            key = "neck.upsample_4x." + key[len("neck.ops.0."):]
        elif key.startswith("neck.ops.1."):
            key = "neck.upsample_2x.0." + key[len("neck.ops.1."):]
        else:
            key = _CONV_MODULE.sub(lambda m: f"{m[1]}.{'conv' if m[2] == '0' else 'bn'}.", key)
        out[key] = v
    return out


def export_mmseg(ckpt_path, out_path) -> str:
    """Write the encoder of any checkpoint (.pth, or .safetensors by extension) for mmseg's MAE backbone
    (load it with init_cfg=dict(type='Pretrained', checkpoint=FILE)), or a trained ade20k_seg segmenter
    whole for mmseg's EncoderDecoder; returns the arch."""
    ckpt = read_checkpoint(ckpt_path)
    conf = ckpt.get("config") if isinstance(ckpt, dict) else None
    if isinstance(conf, dict) and conf.get("task") == "ade20k_seg":
        init = conf.get("init") or {}  # a segmenter on a variant encoder has no mmseg MAE layout
        refuse_variants({**init, "ckpt": str(ckpt_path), "format": init.get("format")}, "the mmseg export")
        sd, info = segmenter_to_mmseg(ckpt["model"]), {"arch": conf["arch"]}
    else:
        enc, info = load_encoder(ckpt_path)
        refuse_variants({**info, "arch_spec": info["spec"].as_dict(), "ckpt": str(ckpt_path)}, "the mmseg export")
        sd = to_mmseg(enc)
    write_weights(out_path, sd, {"arch": info["arch"]})
    return info["arch"]
