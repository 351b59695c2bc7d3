"""`mae-bench export --to mmseg`: an encoder in the key layout of mmsegmentation's `MAE` or `BEiT` backbone.

The mapping is mmsegmentation's tools/model_converters/beit2mmseg.py (which its MAE and BEiT configs use):
blocks.i -> layers.i, norm1/norm2 -> ln1/ln2, mlp.fc1 -> ffn.layers.0.0, mlp.fc2 -> ffn.layers.1,
patch_embed.proj -> patch_embed.projection; cls_token, pos_embed and the final norm keep their names.
mmseg's MAE layers are built with a full qkv bias (bias=True), so attn.qkv.bias is written whole (the
k part included). The backbone's own extras are absent from a pretrained plain encoder and are filled by
mmseg as for the official checkpoints: layer scale gamma_1/gamma_2 (init_values=1.0 in the configs)
and the zero-initialised relative position bias tables. pos_embed stays at the pretraining grid;
mmseg's MAE backbone resizes it when it loads (resize_abs_pos_embed).

Variants go to the mmseg backbone that computes them exactly (mmseg/models/backbones/mae.py, beit.py):
a layer-scale ViT (timm init_values, DeiT III, DINOv2 without registers, iBOT) to `MAE` with its gammas
(ls1/ls2.gamma -> gamma_1/gamma_2); a BEiT-family encoder without an absolute position embedding (BEiT, BEiT v2
fine-tuned, data2vec) to `BEiT` (qv_bias=True: q_bias / v_bias, its relative_position_bias_table per layer,
gamma_1 / gamma_2); one with an absolute position embedding (BEiT v2 pretraining) to `MAE`, whose full qkv bias
holds (q_bias, 0, v_bias) — mmseg's BEiT has no pos_embed. A ViT without qkv bias gets a zero bias in `MAE`, and a class token without a position slot (timm's
no_embed_class) a zero slot in front of pos_embed.
A variant's file is mmengine's checkpoint layout, {"state_dict": tensors, "meta": {"mmseg_backbone": type,
"settings": constructor keywords}} (both mmseg's backbone init_cfg and mmengine's load_checkpoint read
"state_dict"); a .safetensors file carries the same in its metadata. What no mmseg backbone computes (extra
tokens, no class token, SwiGLU, a non-integer MLP ratio) is one error line
before anything is written.

A trained segmenter (`RUN/model_final.pth` of `ade20k_seg`) is written whole in the names of mmseg's
EncoderDecoder (MAE or BEiT + Feature2Pyramid + UPerHead + FCNHead), loadable with mmengine's `load_checkpoint`:
backbone.vit.<timm key> -> backbone.<key above> (layer scale ls1/ls2.gamma -> gamma_1/gamma_2);
neck.ops.0.* -> neck.upsample_4x.*, neck.ops.1.* -> neck.upsample_2x.0.*; in the heads every ConvModule
(psp_modules.i.1, bottleneck, lateral_convs.i, fpn_convs.i, fpn_bottleneck, convs.i) maps its .0 (conv)
and .1 (BN) to .conv and .bn; conv_seg keeps its name.
"""
import json
import os
import re

import torch

from mae_core.archs import VitArch
from mae_core.atomic import atomic_write
from mae_core.checkpoint import read_checkpoint
from mae_core.errors import MaeBenchError
from mae_core.export import write_weights
from mae_core.pos_embed import rel_pos_grid
from mae_core.weights import load_encoder

_BLOCK_RENAMES = (("norm1.", "ln1."), ("norm2.", "ln2."), ("mlp.fc1.", "ffn.layers.0.0."), ("mlp.fc2.", "ffn.layers.1."),
                  ("ls1.gamma", "gamma_1"), ("ls2.gamma", "gamma_2"))
_CONV_MODULE = re.compile(r"^((?:decode_head|auxiliary_head)\.(?:psp_modules\.\d+\.1|bottleneck|lateral_convs\.\d+|"
                          r"fpn_convs\.\d+|fpn_bottleneck|convs\.\d+))\.([01])\.")


def mmseg_key(key: str) -> str:
    """One timm ViT (or timm Beit) key -> its mmseg MAE / BEiT backbone key."""
    if key.startswith("blocks."):
        key = "layers." + key[len("blocks."):]
        for old, new in _BLOCK_RENAMES:
            key = key.replace(old, new)
        return key
    if key.startswith("patch_embed.proj."):
        return "patch_embed.projection." + key[len("patch_embed.proj."):]
    return key


def mmseg_backbone(arch: VitArch) -> str:
    """"MAE" or "BEiT": the mmseg backbone that computes `arch` exactly; one error line for what neither does."""
    why = [text for text, present in (
        (f"{arch.reg_tokens} register tokens", arch.reg_tokens), ("a distillation token", arch.dist_token),
        ("no class token", not arch.class_token),  # mmseg's backbones take one class token and the patches
        ("a SwiGLU MLP", arch.swiglu),  # mmseg's FFN is fc-GELU-fc
        # mmseg builds mlp_ratio * embed_dims channels: a fractional ratio gives nn.Linear a float size
        (f"MLP ratio {arch.mlp_ratio:g} (mmseg takes an integer ratio)", arch.mlp_ratio != int(arch.mlp_ratio)),
        ("no absolute position embedding on ViT blocks", not arch.abs_pos and not arch.beit)) if present]
    if why:
        raise MaeBenchError(f"the mmseg export takes what mmsegmentation's MAE or BEiT backbone computes (a class "
                            f"token and the patches, GELU MLP); this encoder has {', '.join(why)}")
    return "BEiT" if arch.beit and not arch.abs_pos else "MAE"


def backbone_settings(arch: VitArch, backbone: str, img_size: int) -> dict:
    """The constructor keywords (besides out_indices) mmseg's `backbone` needs to compute `arch`: layer scale is
    1.0 when the file has no gammas (the identity, as mmseg's MAE configs), overwritten when it has them."""
    settings = dict(img_size=img_size, patch_size=arch.patch_size, in_channels=arch.in_chans,
                    embed_dims=arch.embed_dim, num_layers=arch.depth, num_heads=arch.num_heads,
                    mlp_ratio=int(arch.mlp_ratio), init_values=1.0, norm_cfg=dict(type="LN", eps=arch.norm_eps))
    if backbone == "BEiT":
        settings["qv_bias"] = arch.qkv_bias
    return settings


def _settings_text(backbone: str, settings: dict) -> str:
    return f"type='{backbone}', " + ", ".join(f"{k}={v!r}" for k, v in settings.items())


def to_mmseg(encoder: dict, arch: VitArch | None = None, backbone: str = "MAE", prefix: str = "") -> dict:
    """A timm-named encoder state dict (its keys under `prefix`) in mmseg's `backbone` names. For mmseg's MAE (full
    qkv bias), BEiT's q_bias / v_bias become (q_bias, 0, v_bias), and an encoder without qkv bias gets zeros."""
    out = {prefix + mmseg_key(k[len(prefix):]): v for k, v in encoder.items()}
    if arch is not None and arch.no_embed_class and prefix + "pos_embed" in out:  # a class token without a position:
        pos = out[prefix + "pos_embed"]  # a zero slot in front (mmseg's MAE adds pos_embed to [cls, patches])
        out[prefix + "pos_embed"] = torch.cat((pos.new_zeros(1, 1, pos.shape[-1]), pos), dim=1)
    if backbone == "MAE" and arch is not None and (arch.beit or not arch.qkv_bias):
        for i in range(arch.depth):
            p = f"{prefix}layers.{i}.attn."
            q, v = out.pop(p + "q_bias", None), out.pop(p + "v_bias", None)
            w = out[p + "qkv.weight"]
            out[p + "qkv.bias"] = torch.cat((q, torch.zeros_like(v), v)) if q is not None else w.new_zeros(w.shape[0])
    return out


def segmenter_to_mmseg(state_dict: dict, arch: VitArch | None = None, backbone: str = "MAE") -> dict:
    """Our Segmenter's state dict in the names of mmseg's EncoderDecoder (the head mapping above)."""
    out = {}
    for key, v in state_dict.items():
        if key.startswith("backbone.vit."):
            key = "backbone." + key[len("backbone.vit."):]  # renamed by to_mmseg below, in place
        elif key.startswith("neck.ops.0."):
            key = "neck.upsample_4x." + key[len("neck.ops.0."):]
        elif key.startswith("neck.ops.1."):
            key = "neck.upsample_2x.0." + key[len("neck.ops.1."):]
        else:
            key = _CONV_MODULE.sub(lambda m: f"{m[1]}.{'conv' if m[2] == '0' else 'bn'}.", key)
        out[key] = v
    back = {k: v for k, v in out.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in out.items() if not k.startswith("backbone.")}
    return {**to_mmseg(back, arch, backbone, "backbone."), **rest}


def _window(sd: dict, arch: VitArch, default: int) -> int:
    """The image size the tensors are for: their relative position tables' window, else pos_embed's grid."""
    for key, v in sd.items():
        if key.endswith("relative_position_bias_table") and (side := rel_pos_grid(v)):
            return side * arch.patch_size
    pos = sd.get("pos_embed", sd.get("backbone.vit.pos_embed"))
    if pos is not None:
        side = int(round((pos.shape[1] - (0 if arch.no_embed_class else arch.prefix_tokens)) ** 0.5))
        return side * arch.patch_size
    return default


def _write_variant(path, tensors: dict, meta: dict) -> None:
    """mmengine's checkpoint layout {"state_dict", "meta"} (.pth), or the tensors with `meta` as JSON metadata."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        write_weights(path, tensors, {k: json.dumps(v) if isinstance(v, dict) else v for k, v in meta.items()})
        return
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: torch.save({"state_dict": tensors, "meta": meta}, tmp))


def export_mmseg(ckpt_path, out_path) -> str:
    """Write the encoder of any checkpoint (.pth, or .safetensors by extension) for mmseg's MAE or BEiT backbone
    (load it with init_cfg=dict(type='Pretrained', checkpoint=FILE)), or a trained ade20k_seg segmenter
    whole for mmseg's EncoderDecoder; prints the backbone's settings; returns the arch."""
    ckpt = read_checkpoint(ckpt_path)
    conf = ckpt.get("config") if isinstance(ckpt, dict) else None
    if isinstance(conf, dict) and conf.get("task") == "ade20k_seg":
        spec = (conf.get("init") or {}).get("arch_spec")
        arch = VitArch(**{k: v for k, v in spec.items() if k != "name"}) if spec else None
        backbone = mmseg_backbone(arch) if arch is not None else "MAE"
        variant = arch is not None and not arch.plain
        sd = segmenter_to_mmseg(ckpt["model"], arch if variant else None, backbone)
        name, what = conf["arch"], "EncoderDecoder with backbone"
        img_size = _window(ckpt["model"], arch, 0) if arch is not None else None
    else:
        enc, info = load_encoder(ckpt_path)
        arch = info["spec"]
        backbone, variant = mmseg_backbone(arch), not arch.plain
        sd, name, what = to_mmseg(enc, arch if variant else None, backbone), info["arch"], "backbone"
        img_size = _window(enc, arch, info["img_size"])
    if not variant:  # the plain MAE layout, unchanged
        write_weights(out_path, sd, {"arch": name})
        if arch is not None and img_size:
            print(f"mmseg {what}: {_settings_text(backbone, backbone_settings(arch, backbone, img_size))}")
        return name
    settings = backbone_settings(arch, backbone, img_size)
    _write_variant(out_path, sd, {"arch": name, "mmseg_backbone": backbone, "settings": settings})
    tables = any(k.endswith("relative_position_bias_table") for k in sd)
    notes = []
    if tables:
        notes.append(f"the relative position tables are for img_size {img_size}; mmseg 1.2.2 resizes them for "
                     "another with scipy's interp2d, gone since scipy 1.14")
    if (arch.pos_offset or arch.pos_antialias) and arch.abs_pos:
        notes.append("at another img_size mmseg resizes pos_embed bicubically, not by the release's own rule as "
                     "our loader does")
    print(f"mmseg {what}: {_settings_text(backbone, settings)}" + "".join(f" ({n})" for n in notes))
    return name
