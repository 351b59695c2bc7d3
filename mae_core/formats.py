"""Checkpoint formats: which release layout a file is, and the ViT encoder it holds in timm's names.

A registry as timm's `register_model` and HF's auto classes: each `Format` is a name, the init kind a result
records, a detector on the file's top-level dict (keys, prefixes, shapes), and a mapping onto timm
`VisionTransformer` names (timm `Beit` names for BEiT's layout) that also says which keys are left out and why
(heads, decoders, momentum encoders).
`--ckpt PATH` detects (exactly one format must match), `--ckpt FORMAT:PATH` forces one. The architecture is
then read from the mapped tensors (`infer_arch`), with the number of heads from the format's config or convention.
"""
import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .archs import ARCHS, VitArch, parse_arch
from .errors import MaeBenchError
from .feature_rules import METHODS, MethodFeatures

_WRAPPER = re.compile(r"^(?:module\.|_orig_mod\.)+")  # DDP, torch.compile


@dataclass
class Mapped:
    """A format's reading of a file: encoder tensors in timm names, the keys it leaves out (key -> why), and
    settings no shape reveals (num_heads, norm_eps, pos_offset, no_embed_class)."""
    weights: dict
    dropped: dict = field(default_factory=dict)
    hints: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Format:
    name: str
    kind: str  # the result record's init kind
    summary: str  # what it is, one line
    example: str  # a release file of this layout
    rule: str  # the detection rule, in words
    detect: Callable[[dict], bool]
    map: Callable[[dict], Mapped]
    method: str = ""  # the method's name as tables print it ("DINOv2", "MoCo v3")
    features: MethodFeatures | None = None  # what the method's own linear evaluation and k-NN read (feature_rules)


FORMATS: dict[str, Format] = {}  # name -> Format, in registration order


def register_format(name: str, *, kind: str, summary: str, example: str, rule: str, detect: Callable[[dict], bool],
                    method: str = ""):
    """Decorator: register the mapping function it decorates as format `name`; `method` names the method (as the
    tables print it) whose feature rules (mae_core.feature_rules.METHODS) model.features=method takes."""
    def wrap(fn):
        if name in FORMATS:
            raise ValueError(f"checkpoint format {name!r} is registered already")
        FORMATS[name] = Format(name, kind, summary, example, rule, detect, fn, method, METHODS.get(method))
        return fn
    return wrap


def known_formats() -> str:
    return ", ".join(FORMATS)


def detect_format(top: dict, source: str) -> Format:
    """The one registered format whose detector accepts `top`; one error line listing the formats otherwise."""
    found = [f for f in FORMATS.values() if f.detect(top)]
    if len(found) == 1:
        return found[0]
    keys = ", ".join(map(str, list(top)[:6]))
    if not found:
        sd = _wrapped(top)
        if not sd and not any(_tensors(v) for v in top.values()):
            raise MaeBenchError(f"checkpoint {source} holds no weights (top-level keys: {keys})")
        if sd and not any(k.endswith("patch_embed.proj.weight") for k in sd):
            raise MaeBenchError(f"checkpoint {source} does not hold a ViT encoder (no patch_embed.proj.weight); keys "
                                f"look like: {', '.join(list(sd)[:4])}... (known formats: {known_formats()})")
        raise MaeBenchError(f"checkpoint {source} is in no known format (top-level keys: {keys}); known formats: "
                            f"{known_formats()} (force one with --ckpt FORMAT:PATH)")
    raise MaeBenchError(f"checkpoint {source} is ambiguous: it looks like {' and '.join(f.name for f in found)}; "
                        f"force one with --ckpt FORMAT:PATH (known formats: {known_formats()})")


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise MaeBenchError(f"unknown checkpoint format {name!r}; known formats: {known_formats()}")
    return FORMATS[name]


# ---- reading the tensors of a top-level dict ---------------------------------------------------------------------
def _tensors(d) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, torch.Tensor)} if isinstance(d, dict) else {}


def _wrapped(top: dict, keys=("model", "state_dict", "model_ema")) -> dict:
    """The tensors under the first of `keys` that holds a dict, else the top level; DDP / compile prefixes off."""
    for key in keys:
        if _tensors(top.get(key)):  # an empty `model` beside a full `state_dict` is not the weights
            return {_WRAPPER.sub("", k): v for k, v in _tensors(top[key]).items()}
    return {_WRAPPER.sub("", k): v for k, v in _tensors(top).items()}


def _flat_file(top: dict) -> bool:
    from .checkpoint import SafetensorsFile
    return isinstance(top, SafetensorsFile)


def _is_vit(sd: dict) -> bool:
    w = sd.get("patch_embed.proj.weight")
    return w is not None and w.ndim == 4


def _split(sd: dict, drops: dict) -> Mapped:
    """Keys starting with a prefix in `drops` (prefix -> why) are left out with that reason; the rest is the encoder."""
    kept, dropped = {}, {}
    for k, v in sd.items():
        why = next((reason for prefix, reason in drops.items() if k == prefix or k.startswith(prefix)), None)
        if why is None:
            kept[k] = v
        else:
            dropped[k] = why
    return Mapped(kept, dropped)


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


_HEAD = "classification head (a task builds its own)"


# ---- MAE: ours, the official releases, HF ViTMAE (hf_import converts it on reading) ------------------------------
def _mae_args(top) -> bool:
    args = top.get("args")
    return isinstance(args, argparse.Namespace) and hasattr(args, "mask_ratio")


def _special(sd: dict) -> bool:
    """Tensors only other releases have: DINOv2's 2-D mask token, iBOT's masked_embed, DeiT's distillation token."""
    mask = sd.get("mask_token")
    return (mask is not None and mask.ndim == 2) or "masked_embed" in sd or "dist_token" in sd or _beit(sd)


def _beit(sd: dict) -> bool:
    """BEiT / BEiT v2 / data2vec layouts (q/v-only biases, relative position bias): the `beit` formats'."""
    return any(k.endswith((".q_bias", "relative_position_bias_table")) for k in sd)


def _detect_mae(top: dict) -> bool:
    if "teacher" in top or "student" in top or "hf_model_type" in top:
        return False
    if isinstance(top.get("config"), dict) or _mae_args(top):
        return True  # ours (incl. HF ViTMAE folders, read as ours) / the official training checkpoints
    sd = _wrapped(top)
    if not _is_vit(sd) or _special(sd):
        return False
    if any(k.startswith("decoder_") for k in sd):
        return True  # an MAE with its decoder, in any wrapper
    if _flat_file(top) or not any(isinstance(top.get(k), dict) for k in ("model", "model_ema")):
        return False
    # the official releases: encoder only (pretrain) or fine-tuned (fc_norm + head)
    return "head.weight" not in sd or "fc_norm.weight" in sd


_MAE_DROPS = {"decoder_": "MAE decoder", "mask_token": "MAE decoder's mask token",
              "encoder_mask_token": "mask token of a mask-tokens-in-encoder MAE (pretraining only)",
              "head.": _HEAD, "fc_norm.": "classifier's fc_norm beside the encoder's own final norm"}


def map_mae(top: dict) -> Mapped:
    """Ours, official MAE and HF ViTMAE: timm names already. A classifier fine-tuned with global average pooling
    (official MAE fine-tuning, our supervised baseline) has fc_norm in place of the final norm: its fc_norm
    becomes the encoder's norm, the LayerNorm that last saw the features."""
    sd = _wrapped(top)
    out = _split(sd, _MAE_DROPS)
    if "norm.weight" not in out.weights and "fc_norm.weight" in sd:
        for p in ("weight", "bias"):
            if f"fc_norm.{p}" in sd:
                out.weights[f"norm.{p}"] = sd[f"fc_norm.{p}"]
                del out.dropped[f"fc_norm.{p}"]
    config, args = top.get("config"), top.get("args")
    if isinstance(config, dict) and isinstance(config.get("num_heads"), int):
        out.hints["num_heads"] = config["num_heads"]
    elif isinstance(args, argparse.Namespace) and isinstance(getattr(args, "model", None), str):
        spec = parse_arch(args.model)  # mae_vit_base_patch16
        if spec:
            out.hints["num_heads"] = spec["num_heads"]
    if _beit(out.weights):  # our own checkpoint of a fine-tuned BEiT encoder (timm Beit names)
        out.hints["beit"] = True
    return out


register_format("mae", kind="mae", summary="ours, the official MAE releases and HF ViTMAE folders",
                example="mae_pretrain_vit_base.pth, mae_visualize_vit_large.pth, RUN/checkpoint-last.pth, "
                        "facebook/vit-mae-base",
                rule="a `config` dict (ours) or an `args` with mask_ratio (official training), or a ViT with an "
                     "MAE decoder, or `model` holding a ViT without a head or with fc_norm + head (official "
                     "releases), or an HF folder of model_type vit_mae",
                detect=_detect_mae, method="MAE")(map_mae)

register_format("supervised", kind="supervised", summary="our supervised baseline's checkpoint (as mae; only forced)",
                example="supervised:RUN/checkpoint-last.pth", rule="never detected: give supervised:PATH",
                detect=lambda top: False, method="supervised")(map_mae)


# ---- timm --------------------------------------------------------------------------------------------------------
def _detect_timm(top: dict) -> bool:
    if any(k in top for k in ("teacher", "student", "hf_model_type", "config")) or _mae_args(top):
        return False
    sd = _wrapped(top, ("state_dict",)) if isinstance(top.get("state_dict"), dict) else None
    if sd is None:
        flat = top.get("model") if _flat_file(top) else top  # safetensors files read as {"model": tensors}
        sd = {_WRAPPER.sub("", k): v for k, v in _tensors(flat).items()}
    if any(k.startswith(("base_encoder.", "decoder_")) for k in sd):
        return False
    return _is_vit(sd) and not _special(sd)


def map_timm(top: dict) -> Mapped:
    """timm `VisionTransformer` state dicts (also DINO's backbone-only releases, which use the same names): layer
    scale `ls1/ls2.gamma`, registers `reg_token`, no class token, `no_embed_class` are read from the tensors."""
    sd = _wrapped(top, ("state_dict", "model"))
    out = _split(sd, {"head.": _HEAD, "head_dist.": _HEAD})
    if "fc_norm.weight" in out.weights and "norm.weight" not in out.weights:  # timm avg-pool classifier
        for p in ("weight", "bias"):
            out.weights[f"norm.{p}"] = out.weights.pop(f"fc_norm.{p}")
    return out


register_format("timm", kind="timm", summary="a timm VisionTransformer state dict (flat, under `state_dict`, or "
                "a .safetensors file); also DINO's backbone-only releases",
                example="vit_base_patch16_224.augreg_in21k/model.safetensors, dino_deitsmall16_pretrain.pth",
                rule="flat tensors (or `state_dict`) in timm names with patch_embed.proj.weight, none of the other "
                     "formats' marks",
                detect=_detect_timm, method="timm")(map_timm)


# ---- DeiT (facebookresearch/deit) --------------------------------------------------------------------------------
def _detect_deit(top: dict) -> bool:
    if any(k in top for k in ("teacher", "student", "config", "hf_model_type")) or _mae_args(top):
        return False
    if not isinstance(top.get("model"), dict):
        return False
    sd = _wrapped(top, ("model",))
    if "dist_token" in sd:
        return _is_vit(sd)
    return not _flat_file(top) and _is_vit(sd) and "head.weight" in sd and "fc_norm.weight" not in sd \
        and not any(k.startswith("decoder_") for k in sd) and not _special(sd)


def map_deit(top: dict) -> Mapped:
    """DeiT releases ({"model": timm names with head}); distilled models' dist_token rides in timm's register slot
    (cls, dist, patches, each with a position slot: DeiT's DistilledVisionTransformer order)."""
    sd = _wrapped(top, ("model", "model_ema"))
    out = _split(sd, {"head.": _HEAD, "head_dist.": "distillation head (a task builds its own)"})
    out.weights = _layer_scale_names(out.weights)  # DeiT III (models_v2.py): gamma_1 / gamma_2
    return out


def _layer_scale_names(sd: dict) -> dict:
    """`blocks.i.gamma_1` / `gamma_2` (DeiT III, iBOT, BEiT-style layer scale) as timm's `ls1.gamma` / `ls2.gamma`."""
    return {re.sub(r"^(blocks\.\d+)\.gamma_([12])$", r"\1.ls\2.gamma", k): v for k, v in sd.items()}


register_format("deit", kind="deit", summary="DeiT releases (`model` with a classification head; the distilled "
                "models' dist_token and head_dist; DeiT III's gamma_1 / gamma_2 and patch-only pos_embed)",
                example="deit_base_distilled_patch16_224-df68dfff.pth, deit_3_base_224_1k.pth",
                rule="`model` holding a ViT with head and final norm but no fc_norm, decoder or config (or any "
                     "file with dist_token)",
                detect=_detect_deit, method="DeiT")(map_deit)


# ---- MoCo v3 (facebookresearch/moco-v3) --------------------------------------------------------------------------
def _detect_moco(top: dict) -> bool:
    sd = top.get("state_dict")
    return isinstance(sd, dict) and any(_WRAPPER.sub("", k).startswith("base_encoder.") for k in sd)


def map_moco_v3(top: dict) -> Mapped:
    """MoCo v3 training checkpoints: the base encoder, as main_lincls.py loads it; its `head` is MoCo v3's
    projection MLP, and the momentum encoder and predictor are left out on purpose. Heads: 12, the convention
    of moco-v3's vits.py (vit_small, vit_base and the conv-stem models all have 12 heads)."""
    sd = {_WRAPPER.sub("", k): v for k, v in _tensors(top["state_dict"]).items()}
    out = _split(sd, {"base_encoder.head.": "MoCo v3 projection head (base_encoder.head)",
                      "momentum_encoder.": "momentum encoder (unused on purpose: the base encoder is evaluated, "
                                           "as moco-v3's main_lincls.py)",
                      "predictor.": "MoCo v3 predictor"})
    weights = _strip(out.weights, "base_encoder.")
    out.dropped.update({k: "not part of the base encoder" for k in out.weights if not k.startswith("base_encoder.")})
    out.weights = weights
    embed = weights.get("patch_embed.proj.weight")
    if embed is not None and embed.shape[0] % 12 == 0:
        out.hints["num_heads"] = 12
    return out


register_format("moco_v3", kind="moco_v3", summary="MoCo v3 training checkpoints (base encoder used)",
                example="vit-b-300ep.pth.tar", rule="`state_dict` with module.base_encoder. keys",
                detect=_detect_moco, method="MoCo v3")(map_moco_v3)


# ---- DINO and iBOT (facebookresearch/dino, bytedance/ibot) ------------------------------------------------------
# their vision_transformer.py: arch -> (width, heads)
_DINO_ARCHS = {"vit_tiny": (192, 3), "vit_small": (384, 6), "vit_base": (768, 12), "vit_large": (1024, 16)}


def _dino_like(top: dict, method: str, key: str = "teacher") -> Mapped:
    """`teacher` (default, as their eval code with --checkpoint_key teacher) of a full checkpoint, `state_dict` of a
    backbone release, or a flat backbone; `module.` and `backbone.` prefixes off, the projection head left out."""
    dropped = {}
    if isinstance(top.get(key), dict):
        sd = _tensors(top[key])
        for other in ("student", "teacher"):
            if other != key and isinstance(top.get(other), dict):
                dropped.update({f"{other}.{k}": f"{other} network (unused on purpose: the {key} is evaluated, as "
                                f"{method}'s eval code with --checkpoint_key {key})" for k in _tensors(top[other])})
    else:
        sd = _tensors(top["state_dict"]) if isinstance(top.get("state_dict"), dict) else \
            _tensors(top.get("model") if _flat_file(top) else top)
    sd = {re.sub(r"^(?:module\.)?(?:backbone\.)?", "", k): v for k, v in sd.items()}
    out = _split(sd, {"head.": f"{method} projection head", "masked_embed": "iBOT mask token (masked image "
                                                                              "modeling in training only)"})
    out.dropped.update(dropped)
    out.weights = _layer_scale_names(out.weights)  # iBOT's layer scale, when trained with init_values > 0
    args = top.get("args")
    arch = getattr(args, "arch", None) if isinstance(args, argparse.Namespace) else None
    embed = out.weights.get("patch_embed.proj.weight")
    if arch in _DINO_ARCHS and embed is not None and embed.shape[0] == _DINO_ARCHS[arch][0]:
        out.hints["num_heads"] = _DINO_ARCHS[arch][1]
    out.hints.update(head_dim=64, pos_offset=0.1)  # interpolate_pos_encoding: scale factor (w0 + 0.1) / M
    return out


def _student(top: dict, method: str) -> Mapped:
    if not isinstance(top.get("student"), dict):
        raise MaeBenchError(f"a {method} student is read from a full checkpoint; this file has no `student` "
                            f"(top-level keys: {', '.join(map(str, list(top)[:6]))})")
    return _dino_like(top, method, key="student")


def _detect_dino(top: dict) -> bool:
    return isinstance(top.get("teacher"), dict) and isinstance(top.get("student"), dict) and "ibot_loss" not in top


def _detect_ibot(top: dict) -> bool:
    if isinstance(top.get("teacher"), dict) and "ibot_loss" in top:
        return True
    if "teacher" in top or "student" in top:
        return False
    sd = _tensors(top["state_dict"]) if isinstance(top.get("state_dict"), dict) else \
        _tensors(top.get("model") if _flat_file(top) else top)
    return any(re.sub(r"^(?:module\.)?(?:backbone\.)?", "", k) == "masked_embed" for k in sd)


register_format("dino", kind="dino", summary="DINO checkpoints: full (teacher used) or backbone-only (force dino:)",
                example="dino_vitbase16_pretrain_full_checkpoint.pth, dino:dino_deitsmall16_pretrain.pth",
                rule="`teacher` and `student` without `ibot_loss` (backbone-only files read as timm unless forced)",
                detect=_detect_dino, method="DINO")(lambda top: _dino_like(top, "DINO"))
register_format("ibot", kind="ibot", summary="iBOT checkpoints: full (teacher used) or backbone (`state_dict`)",
                example="ibot vitb_16/checkpoint.pth, vitb_16/checkpoint_teacher.pth",
                rule="`teacher` with `ibot_loss`, or weights with masked_embed",
                detect=_detect_ibot, method="iBOT")(lambda top: _dino_like(top, "iBOT"))
# the student network of a full checkpoint, as their eval code with --checkpoint_key student: forced only
register_format("dino_student", kind="dino", summary="DINO full checkpoints, the student network (force only)",
                example="dino_student:dino_vitbase16_pretrain_full_checkpoint.pth", rule="never detected: force it",
                detect=lambda top: False, method="DINO")(lambda top: _student(top, "DINO"))
register_format("ibot_student", kind="ibot", summary="iBOT full checkpoints, the student network (force only)",
                example="ibot_student:vitb_16/checkpoint.pth", rule="never detected: force it",
                detect=lambda top: False, method="iBOT")(lambda top: _student(top, "iBOT"))


# ---- DINOv2 torch-hub releases (facebookresearch/dinov2) ---------------------------------------------------------
def _detect_dinov2(top: dict) -> bool:
    if "teacher" in top or "hf_model_type" in top:
        return False
    sd = _wrapped(top)
    mask = sd.get("mask_token")
    return _is_vit(sd) and mask is not None and mask.ndim == 2


def _from_dinov2(sd: dict) -> tuple[dict, dict]:
    """timm's `_convert_dinov2` (timm/models/vision_transformer.py): with registers, the class token takes its
    position slot (pos_embed[:, 0] is never interpolated) and pos_embed keeps the patches only (no_embed_class),
    as DINOv2 adds position embeddings before inserting the registers; SwiGLU w12/w3 become fc1/fc2."""
    sd, hints = dict(sd), {"pos_offset": 0.1}  # interpolate_offset of the hub models
    if "register_tokens" in sd:
        sd["reg_token"] = sd.pop("register_tokens")
        sd["cls_token"] = sd["cls_token"] + sd["pos_embed"][:, 0]
        sd["pos_embed"] = sd["pos_embed"][:, 1:]
        hints["no_embed_class"] = True
    out = {}
    for k, v in sd.items():
        m = re.match(r"^blocks\.\d+\.(\d+\..*)$", k)  # block_chunks > 0 (training checkpoints): blocks.c.i.
        k = f"blocks.{m.group(1)}" if m else k
        if re.search(r"\.mlp\.w12\.", k):
            k, hints["swiglu"] = k.replace(".w12.", ".fc1."), True
        k = k.replace(".mlp.w3.", ".mlp.fc2.")
        out[k] = v
    return out, hints


def map_dinov2(top: dict) -> Mapped:
    """DINOv2 hub releases (`dinov2_vits14_pretrain.pth`, `..._reg4_pretrain.pth`): flat DinoVisionTransformer
    state dicts; heads: head dim 64, the convention of dinov2's vision_transformer.py (vit_small 6 ... vit_giant2 24)."""
    out = _split(_wrapped(top), {"mask_token": "DINOv2 mask token (masked image modeling in training only)",
                                 "head.": _HEAD})
    out.weights, hints = _from_dinov2(out.weights)
    out.hints.update(hints, head_dim=64)
    return out


register_format("dinov2", kind="dinov2", summary="DINOv2 torch-hub releases (layer scale, registers, patch 14, 518 px)",
                example="dinov2_vits14_pretrain.pth, dinov2_vitb14_reg4_pretrain.pth",
                rule="a ViT with a 2-D mask_token [1, D]", detect=_detect_dinov2,
                method="DINOv2")(map_dinov2)


# ---- HF transformers folders: ViTModel, DeiTModel, Dinov2Model (hf_import reads them) ---------------------------
_HF_TYPES = {"vit": "hf_vit", "deit": "hf_deit", "dinov2": "hf_dinov2", "dinov2_with_registers": "hf_dinov2"}


def _hf_mapping(top: dict, method: str) -> Mapped:
    from .hf_import import convert_state_dict
    config, raw = top["hf_config"], top["hf_weights"]
    if config.get("hidden_act", "gelu") != "gelu" or config.get("use_swiglu_ffn"):
        raise MaeBenchError(f"HF {config.get('model_type')} with hidden_act={config.get('hidden_act')!r} / "
                            f"use_swiglu_ffn is not supported (GELU MLPs only)")
    drops = {"pooler.": "HF pooler (dense + tanh head)", "classifier.": _HEAD, "cls_classifier.": _HEAD,
             "distillation_classifier.": "distillation head (a task builds its own)",
             "embeddings.mask_token": "HF mask token (masked image modeling only)"}
    # ViTForImageClassification & co. nest the encoder under a model-type prefix
    prefix = next((p for p in ("vit.", "deit.", "dinov2.") if any(k.startswith(p) for k in raw)), "")
    raw = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in raw.items()}
    out = _split(raw, drops)
    sd = convert_state_dict(out.weights)
    hints = {"num_heads": config.get("num_attention_heads"), "norm_eps": config.get("layer_norm_eps", 1e-12)}
    if method == "dinov2":
        sd, extra = _from_dinov2(sd)
        extra.pop("pos_offset")  # HF's Dinov2 interpolate_pos_encoding resamples to a size (no 0.1 offset), as timm
        hints.update(extra, pos_antialias=config.get("model_type") == "dinov2_with_registers")  # its antialias=True
    out.weights, out.hints = sd, {k: v for k, v in hints.items() if v is not None}
    return out


for _type, _name in (("vit", "hf_vit"), ("deit", "hf_deit"), ("dinov2", "hf_dinov2")):
    register_format(_name, kind={"hf_vit": "timm", "hf_deit": "deit", "hf_dinov2": "dinov2"}[_name],
                    summary=f"HF transformers {_type} folders (config.json + model.safetensors / pytorch_model.bin)",
                    example={"vit": "google/vit-base-patch16-224-in21k", "deit": "facebook/deit-base-distilled-patch16-224",
                             "dinov2": "facebook/dinov2-small, facebook/dinov2-with-registers-small"}[_type],
                    rule=f"a folder whose config.json has model_type "
                         f"{' or '.join(t for t, n in _HF_TYPES.items() if n == _name)}",
                    detect=lambda top, n=_name: _HF_TYPES.get(top.get("hf_model_type")) == n,
                    method={"hf_vit": "timm", "hf_deit": "DeiT", "hf_dinov2": "DINOv2"}[_name])(
        lambda top, m=_type: _hf_mapping(top, m))


# ---- BEiT, BEiT v2 (microsoft/unilm beit/, beit2/), timm's beit_*, HF Beit / Data2VecVision -----------------------
_SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"
_BEIT_DROPS = {"lm_head.": "BEiT masked-image-modeling head (pretraining only)",
               "mask_token": "BEiT mask token (masked image modeling in pretraining only)",
               "cls_pt_layers.": "BEiT v2 patch-aggregation blocks (pretraining only)",
               "cls_pt_norm.": "BEiT v2 patch-aggregation head (pretraining only)",
               "cls_pt_lm_head.": "BEiT v2 patch-aggregation head (pretraining only)",
               "head.": _HEAD}
_INDEX_DROP = "relative position index (recomputed from the grid; BEiT's fine-tuning pops it too)"


def _beit_encoder(sd: dict, drops: dict) -> Mapped:
    """BEiT-named tensors (unilm's names are timm Beit's) as the encoder timm's Beit loads, as BEiT's
    run_class_finetuning.py prepares a pretrained checkpoint: a shared `rel_pos_bias` table is copied into every
    block (added to a block's own table where both exist: both biases are added to the attention logits, in unilm's
    and timm's Attention alike), `relative_position_index` buffers are checked against the grid's and left out,
    and a mean-pooling classifier's `fc_norm` (no final `norm`) becomes the encoder's norm."""
    from timm.models.beit import gen_relative_position_index

    from .pos_embed import rel_pos_grid
    out = _split(sd, drops)
    weights = out.weights
    for key in [k for k in weights if k.endswith("relative_position_index")]:
        table = weights.get(key[:-len("relative_position_index")] + "relative_position_bias_table")
        side = rel_pos_grid(table) if table is not None else None
        index = weights.pop(key)
        if side is None or index.shape != (side * side + 1,) * 2 or \
                not torch.equal(index.long(), gen_relative_position_index((side, side))):
            raise MaeBenchError(f"{key} is not BEiT's relative position index for the grid of its table; "
                                f"refusing to drop it")
        out.dropped[key] = _INDEX_DROP
    shared = weights.pop(_SHARED_TABLE, None)
    if shared is not None:
        for i in range(_count_blocks(weights)):
            key = f"blocks.{i}.attn.relative_position_bias_table"
            weights[key] = weights[key] + shared if key in weights else shared.clone()
        out.dropped[_SHARED_TABLE] = ("shared relative position table, copied into every block's "
                                      "attn.relative_position_bias_table (BEiT's run_class_finetuning.py)")
    if "fc_norm.weight" in weights:
        if "norm.weight" in weights:
            for p in ("weight", "bias"):
                if f"fc_norm.{p}" in weights:
                    del weights[f"fc_norm.{p}"]
                    out.dropped[f"fc_norm.{p}"] = "classifier's fc_norm beside the encoder's own final norm"
        else:  # use_mean_pooling: norm is the identity, fc_norm the LayerNorm that last saw the features
            for p in ("weight", "bias"):
                if f"fc_norm.{p}" in weights:
                    weights[f"norm.{p}"] = weights.pop(f"fc_norm.{p}")
    out.hints["beit"] = True
    return out


_NOT_BEIT_FILE = ("teacher", "student", "hf_model_type", "config")


def _detect_beit(top: dict) -> bool:
    if any(k in top for k in _NOT_BEIT_FILE) or _flat_file(top):
        return False
    if not any(_tensors(top.get(k)) for k in ("model", "module")):
        return False
    sd = _wrapped(top, ("model", "module"))
    return _is_vit(sd) and _beit(sd)


def map_beit(top: dict) -> Mapped:
    """unilm's BEiT / BEiT v2 checkpoints: `model` (or DeepSpeed's `module`, as their --model_key model|module), of
    a pretraining model (shared or per-block tables, mask token, lm_head; BEiT v2's cls_pt_layers) or a fine-tuned
    classifier (fc_norm + head). Heads: the size table (BEiT's sizes are ViT's), else head dim 64."""
    return _beit_encoder(_wrapped(top, ("model", "module", "model_ema")), _BEIT_DROPS)


def _detect_timm_beit(top: dict) -> bool:
    if any(k in top for k in _NOT_BEIT_FILE):
        return False
    if not _flat_file(top) and any(isinstance(top.get(k), dict) for k in ("model", "module")):
        return False
    sd = _wrapped(top, ("model",) if _flat_file(top) else ("state_dict",))
    return _is_vit(sd) and _beit(sd)


def map_timm_beit(top: dict) -> Mapped:
    """timm `Beit` state dicts (`beit_*` / `beitv2_*`, flat or .safetensors): the names BEiT's own."""
    return _beit_encoder(_wrapped(top, ("model",) if _flat_file(top) else ("state_dict",)), _BEIT_DROPS)


register_format("beit", kind="beit", summary="BEiT / BEiT v2 releases (q/v biases, relative position tables, "
                "gamma_1 / gamma_2; a shared table is copied into every block)",
                example="beit_base_patch16_224_pt22k.pth, beitv2_base_patch16_224_pt1k.pth, "
                        "beit_base_patch16_224_pt22k_ft22kto1k.pth",
                rule="`model` (or `module`) holding a ViT with q_bias or relative_position_bias_table",
                detect=_detect_beit, method="BEiT")(map_beit)
register_format("timm_beit", kind="beit", summary="a timm Beit state dict (beit_* / beitv2_*, flat or .safetensors)",
                example="beitv2_base_patch16_224.in1k_ft_in1k/model.safetensors",
                rule="flat tensors (or `state_dict`) with q_bias or relative_position_bias_table",
                detect=_detect_timm_beit, method="BEiT")(map_timm_beit)


# HF transformers BeitModel / Data2VecVisionModel (modeling_beit.py / modeling_data2vec_vision.py names)
_HF_BEIT_BLOCK = {"attention.attention.query.bias": "attn.q_bias", "attention.attention.value.bias": "attn.v_bias",
                  "attention.attention.relative_position_bias.relative_position_bias_table":
                      "attn.relative_position_bias_table",
                  "attention.attention.relative_position_bias.relative_position_index": "attn.relative_position_index",
                  "attention.output.dense.weight": "attn.proj.weight", "attention.output.dense.bias": "attn.proj.bias",
                  "layernorm_before.weight": "norm1.weight", "layernorm_before.bias": "norm1.bias",
                  "layernorm_after.weight": "norm2.weight", "layernorm_after.bias": "norm2.bias",
                  "intermediate.dense.weight": "mlp.fc1.weight", "intermediate.dense.bias": "mlp.fc1.bias",
                  "output.dense.weight": "mlp.fc2.weight", "output.dense.bias": "mlp.fc2.bias",
                  "lambda_1": "gamma_1", "lambda_2": "gamma_2"}
_HF_BEIT_TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
                "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
                "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
                "encoder.relative_position_bias.relative_position_bias_table": _SHARED_TABLE,
                "encoder.relative_position_bias.relative_position_index": "rel_pos_bias.relative_position_index",
                "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
                "pooler.layernorm.weight": "fc_norm.weight", "pooler.layernorm.bias": "fc_norm.bias"}
_HF_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.weight$")


def _hf_beit(top: dict) -> Mapped:
    """HF BeitModel / Data2VecVisionModel folders (and their *ForImageClassification): query / key / value weights
    concatenated into qkv (the key has no bias), lambda_1 / lambda_2 as gamma_1 / gamma_2, the mean-pooling
    pooler's layernorm as fc_norm; then as the BEiT releases. Heads and LayerNorm eps from config.json."""
    config, raw = top["hf_config"], top["hf_weights"]
    if config.get("hidden_act", "gelu") != "gelu":
        raise MaeBenchError(f"HF {config.get('model_type')} with hidden_act={config.get('hidden_act')!r} is not "
                            f"supported (GELU MLPs only)")
    prefix = next((p for p in ("beit.", "data2vec_vision.") if any(k.startswith(p) for k in raw)), "")
    raw = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in raw.items()}
    sd, qkv = {}, {}
    for key, value in raw.items():
        m = re.match(r"^encoder\.layer\.(\d+)\.(.+)$", key)
        if (q := _HF_QKV.match(key)) is not None:
            qkv.setdefault(int(q.group(1)), {})[q.group(2)[0]] = value
        elif m and m.group(2) in _HF_BEIT_BLOCK:
            sd[f"blocks.{m.group(1)}.{_HF_BEIT_BLOCK[m.group(2)]}"] = value
        else:
            sd[_HF_BEIT_TOP.get(key, key)] = value  # anything else: kept, so the fit check names it
    for i, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise MaeBenchError(f"HF checkpoint: layer {i} lacks the {', '.join(sorted({'q', 'k', 'v'} - set(parts)))} "
                                "projection")
        sd[f"blocks.{i}.attn.qkv.weight"] = torch.cat([parts[c] for c in "qkv"])
    out = _beit_encoder(sd, {"embeddings.mask_token": "HF mask token (masked image modeling only)",
                             "classifier.": _HEAD, "lm_head.": "BEiT masked-image-modeling head (pretraining only)"})
    out.hints.update({k: v for k, v in (("num_heads", config.get("num_attention_heads")),
                                        ("norm_eps", config.get("layer_norm_eps", 1e-12))) if v is not None})
    return out


for _type, _name, _example in (("beit", "hf_beit", "microsoft/beit-base-patch16-224-pt22k"),
                               ("data2vec-vision", "hf_data2vec", "facebook/data2vec-vision-base")):
    register_format(_name, kind="beit" if _type == "beit" else "data2vec",
                    summary=f"HF transformers {_type} folders (BeitModel / Data2VecVisionModel layout)",
                    example=_example, rule=f"a folder whose config.json has model_type {_type}",
                    detect=lambda top, t=_type: top.get("hf_model_type") == t,
                    method="BEiT" if _type == "beit" else "data2vec")(_hf_beit)


# ---- the architecture the tensors describe -----------------------------------------------------------------------
def _count_blocks(sd: dict) -> int:
    return len({m.group(1) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})


def _heads(width: int, head_dim: int) -> int:
    heads = max(1, width // head_dim)
    while width % heads:
        heads -= 1
    return heads


def infer_arch(sd: dict, hints: dict, source: str, num_heads: int | None = None) -> VitArch:
    """The ViT that timm-named tensors `sd` are: patch, width, depth, MLP ratio, qkv bias, layer scale, class /
    register / distillation tokens and whether position embeddings cover them, from the shapes; the number of heads
    (which changes no other shape than BEiT's relative position tables, which say it) from `num_heads` (--arch),
    else the format's config or convention, else the size table, else head dim 64 (the ViT / DeiT / DINO
    convention)."""
    proj = sd.get("patch_embed.proj.weight")
    if proj is None or proj.ndim != 4:
        keys = ", ".join(list(sd)[:6])
        raise MaeBenchError(f"{source} does not hold a ViT encoder (no patch_embed.proj.weight); keys look like: {keys}...")
    width, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    if proj.shape[2] != proj.shape[3]:
        raise MaeBenchError(f"{source}: non-square patches {list(proj.shape[2:])} are not supported")
    depth = _count_blocks(sd)
    if depth == 0:
        raise MaeBenchError(f"{source}: the ViT has no blocks (no blocks.0.* keys)")
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    swiglu = bool(hints.get("swiglu"))
    hidden = fc1.shape[0] if fc1 is not None else 4 * width  # SwiGLU: both halves, as timm's SwiGLUPacked
    rel_table = sd.get("blocks.0.attn.relative_position_bias_table") if hints.get("beit") else None
    rel_heads = rel_table.shape[-1] if rel_table is not None and rel_table.ndim == 2 else None  # BEiT: [offsets, heads]
    if num_heads is None:
        num_heads = hints.get("num_heads", rel_heads)
    if rel_heads is not None and num_heads != rel_heads:
        raise MaeBenchError(f"{source}: the relative position tables have {rel_heads} heads, not {num_heads}")
    if num_heads is None and "head_dim" not in hints:
        table = next((s["num_heads"] for s in ARCHS.values()
                      if (s["patch_size"], s["embed_dim"], s["depth"]) == (patch, width, depth)), None)
        num_heads = table
    if num_heads is None:
        num_heads = _heads(width, hints.get("head_dim", 64))
    if width % num_heads:
        raise MaeBenchError(f"{source}: width {width} is not divisible into {num_heads} heads")
    reg = sd.get("reg_token")
    beit = bool(hints.get("beit"))  # timm Beit names: q_bias / v_bias, gamma_1 / gamma_2
    arch = dict(patch_size=patch, embed_dim=width, depth=depth, num_heads=int(num_heads), mlp_ratio=hidden / width,
                in_chans=in_chans, qkv_bias=f"blocks.0.attn.{'q_bias' if beit else 'qkv.bias'}" in sd,
                class_token="cls_token" in sd, reg_tokens=0 if reg is None else reg.shape[1],
                layer_scale=f"blocks.0.{'gamma_1' if beit else 'ls1.gamma'}" in sd, swiglu=swiglu,
                norm_eps=float(hints.get("norm_eps", 1e-6)), pos_offset=float(hints.get("pos_offset", 0.0)),
                pos_antialias=bool(hints.get("pos_antialias", False)))
    if beit:
        return _beit_arch(sd, arch, source)
    if "dist_token" in sd:  # DeiT: the distillation token rides in timm's register slot
        if reg is not None or sd["dist_token"].shape[1] != 1:
            raise MaeBenchError(f"{source}: a distillation token together with register tokens is not supported")
        arch["dist_token"] = True
    pos = sd.get("pos_embed")
    if pos is None:
        raise MaeBenchError(f"{source}: the ViT has no pos_embed (absolute position embeddings are needed)")
    prefix = int(arch["class_token"]) + arch["reg_tokens"] + int(arch.get("dist_token", False))
    n = pos.shape[1]
    with_slots, without = _square(n - prefix), _square(n)
    if hints.get("no_embed_class") and without:
        arch["no_embed_class"] = True
    elif with_slots:
        arch["no_embed_class"] = False
    elif without and prefix:
        arch["no_embed_class"] = True
    else:
        raise MaeBenchError(f"{source}: pos_embed {list(pos.shape)} is not a square grid of patches with or without "
                            f"{prefix} prefix token slots")
    return VitArch(**arch)


def _beit_arch(sd: dict, arch: dict, source: str) -> VitArch:
    """A BEiT encoder: a class token (with a pos_embed slot when it has a pos_embed), no other tokens, relative
    position tables per block (square grids: BEiT's table layout) and / or an absolute pos_embed."""
    from .pos_embed import rel_pos_grid
    if not arch["class_token"] or arch["reg_tokens"] or "dist_token" in sd:
        raise MaeBenchError(f"{source}: a BEiT encoder has a class token and no other tokens")
    table = sd.get("blocks.0.attn.relative_position_bias_table")
    arch.update(beit=True, rel_pos_bias=table is not None, abs_pos="pos_embed" in sd)
    if table is not None and (table.ndim != 2 or rel_pos_grid(table) is None):
        raise MaeBenchError(f"{source}: relative_position_bias_table {list(table.shape)} is not (2H-1)^2 + 3 rows "
                            f"of a square grid")
    if "pos_embed" in sd:
        if not _square(sd["pos_embed"].shape[1] - 1):
            raise MaeBenchError(f"{source}: pos_embed {list(sd['pos_embed'].shape)} is not a class token slot plus "
                                f"a square grid of patches")
    elif table is None:
        raise MaeBenchError(f"{source}: the BEiT encoder has neither pos_embed nor relative position tables")
    return VitArch(**arch)


def _square(n: int) -> bool:
    side = int(round(max(n, 0) ** 0.5))
    return n > 0 and side * side == n


def pos_grid(sd: dict, arch: VitArch) -> tuple[int, int]:
    """The patch grid the position embeddings (or, without them, BEiT's relative position tables) were made for."""
    if not arch.abs_pos:
        from .pos_embed import rel_pos_grid
        side = rel_pos_grid(sd["blocks.0.attn.relative_position_bias_table"])
        return side, side
    n = sd["pos_embed"].shape[1] - (0 if arch.no_embed_class else arch.prefix_tokens)
    side = int(round(n ** 0.5))
    return side, side
