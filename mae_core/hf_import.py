"""HF transformers ViTMAE folders (`config.json` + `model.safetensors` or `pytorch_model.bin`, possibly sharded)
read as an official-MAE checkpoint: `{"model": state dict in our names, "config": settings no shape reveals}`;
ViTModel / DeiTModel / Dinov2Model / BeitModel / Data2VecVisionModel folders read raw (`{"hf_model_type",
"hf_config", "hf_weights"}`) for `mae_core.formats`, which maps them (`convert_state_dict` for the ViT layouts).

Every key spelling is read: transformers 4.x files (`encoder.layer.i.attention.attention.query`,
`intermediate.dense`, `decoder.decoder_layers.i`), 5.x in-memory names (`layers.i.attention.q_proj`, `mlp.fc1`)
and 5.x files (4.x names, decoder blocks as `decoder.decoder_encoder.layer.i`); `ViTMAEForPreTraining` (with
`vit.` and `decoder.`) and `ViTMAEModel` (encoder only).
"""
import json
import re
from pathlib import Path

import torch

from .errors import MaeBenchError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# read raw; mae_core.formats maps them
ENCODER_TYPES = ("vit", "deit", "dinov2", "dinov2_with_registers", "beit", "data2vec-vision")
_BLOCK = re.compile(r"^(?:vit\.)?(?:encoder\.layer|layers)\.(\d+)\.(.+)$")
# transformers 5 saves the decoder blocks as `decoder.decoder_encoder.layer.i` (its 4.x renaming applied to them)
_DECODER_BLOCK = re.compile(r"^decoder\.decoder_(?:layers|encoder\.layer)\.(\d+)\.(.+)$")
_QKV = re.compile(r"^attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)$")
_IN_BLOCK = {"attention.output.dense.": "attn.proj.", "attention.o_proj.": "attn.proj.",
             "layernorm_before.": "norm1.", "layernorm_after.": "norm2.",
             "intermediate.dense.": "mlp.fc1.", "output.dense.": "mlp.fc2.", "mlp.fc1.": "mlp.fc1.",
             "mlp.fc2.": "mlp.fc2.", "norm1.": "norm1.", "norm2.": "norm2.",  # Dinov2Model
             "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
_TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.": "patch_embed.proj.", "layernorm.": "norm.",
        "embeddings.distillation_token": "dist_token", "embeddings.register_tokens": "register_tokens",
        "decoder.mask_token": "mask_token", "decoder.decoder_pos_embed": "decoder_pos_embed",
        "decoder.decoder_embed.": "decoder_embed.", "decoder.decoder_norm.": "decoder_norm.",
        "decoder.decoder_pred.": "decoder_pred."}


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _read_weights(folder: Path, read_file) -> dict:
    for name in WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        if index.is_file():  # sharded: every shard the index names
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            sd = {}
            for shard in shards:
                sd.update(read_file(folder / shard)["model"])
            return sd
        if (folder / name).is_file():
            return read_file(folder / name)["model"] if name.endswith("safetensors") else read_file(folder / name)
    raise MaeBenchError(f"{folder} has a config.json but no {' or '.join(WEIGHT_FILES)}")


def _rename(key: str, qkv: dict) -> str | None:
    """Our name for an HF key; q/k/v parts are collected in `qkv` (returns None for them)."""
    for pattern, prefix in ((_BLOCK, "blocks"), (_DECODER_BLOCK, "decoder_blocks")):
        m = pattern.match(key)
        if m:
            i, rest = m.groups()
            part = _QKV.match(rest)
            if part:
                which = (part.group(1) or part.group(2))[0]
                qkv.setdefault((f"{prefix}.{i}.attn.qkv.{part.group(3)}"), {})[which] = key
                return None
            for hf, ours in _IN_BLOCK.items():
                if rest.startswith(hf):
                    return f"{prefix}.{i}.{ours}{rest[len(hf):]}"
            return key
    bare = key[4:] if key.startswith("vit.") else key
    for hf, ours in _TOP.items():
        if bare == hf or (hf.endswith(".") and bare.startswith(hf)):
            return ours + bare[len(hf):]
    return key


def convert_state_dict(hf: dict) -> dict:
    """HF ViTMAE tensors in the official MAE names (q, k, v concatenated into qkv)."""
    out, qkv = {}, {}
    for key, value in hf.items():
        name = _rename(key, qkv)
        if name is not None:
            out[name] = value
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise MaeBenchError(f"HF checkpoint: {name} lacks {', '.join(sorted({'q', 'k', 'v'} - set(parts)))}")
        out[name] = torch.cat([hf[parts[c]] for c in "qkv"])
    return out


def read_hf_folder(folder: Path, read_file) -> dict:
    """`{"model", "config"}` from an HF ViTMAE folder; `read_file` is the safe single-file reader."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise MaeBenchError(f"cannot read {folder / 'config.json'}: {e}") from None
    kind = config.get("model_type")
    if kind in ENCODER_TYPES:  # mapped by mae_core.formats (hf_vit, hf_deit, hf_dinov2, hf_beit, hf_data2vec)
        return {"hf_model_type": kind, "hf_config": config, "hf_weights": _read_weights(folder, read_file)}
    if kind != "vit_mae":
        raise MaeBenchError(f"{folder} is an HF folder of model_type {kind!r}, not vit_mae or "
                            f"{' or '.join(ENCODER_TYPES)}")
    if not config.get("qkv_bias", True):
        raise MaeBenchError(f"{folder}: qkv_bias=False; MAE encoders have a qkv bias")
    sd = convert_state_dict(_read_weights(folder, read_file))
    ours = {"num_heads": config.get("num_attention_heads"), "decoder_num_heads": config.get("decoder_num_attention_heads"),
            "norm_pix_loss": bool(config.get("norm_pix_loss", False)),
            "recipe": {"model": {"mask_ratio": config.get("mask_ratio"), "norm_pix_loss": config.get("norm_pix_loss"),
                                 "img_size": config.get("image_size"), "decoder_depth": config.get("decoder_num_hidden_layers"),
                                 "decoder_embed_dim": config.get("decoder_hidden_size")}},
            "source": "transformers ViTMAE"}
    return {"model": sd, "config": {k: v for k, v in ours.items() if v is not None}}
