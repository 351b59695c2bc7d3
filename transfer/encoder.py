"""A timm ViT encoder from any init: an MAE checkpoint, a supervised ViT, or random (scratch).

`--ckpt PATH` / `--ckpt mae:PATH`, `--ckpt supervised:PATH` and `--ckpt scratch` (with `--arch`)
all end here, so every downstream task starts from the same model and the same key checks.
"""
import os
import re
from dataclasses import dataclass
from functools import partial

import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer

from mae_core.archs import ARCHS, arch_spec
from mae_core.checkpoint import check_fit
from mae_core.weights import load_encoder
from mae_core.errors import MaeBenchError

GLOBAL_POOLS = ("token", "avg")
# Keys a pretrained encoder may lack: the classifier is always new, and so is fc_norm
# (MAE fine-tuning drops the pretrained `norm` and starts a fresh fc_norm after avg pooling).
_MAY_BE_MISSING = {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
_UNUSED_WITH_AVG = {"norm.weight", "norm.bias"}  # timm's avg-pool ViT has no final norm


@dataclass(frozen=True)
class InitSpec:
    kind: str  # "mae" | "supervised" | "scratch"
    path: str | None


def parse_init(spec: str) -> InitSpec:
    """`scratch`, `supervised:PATH`, `mae:PATH` or a plain `PATH` (an MAE or any ViT checkpoint)."""
    spec = (spec or "").strip()
    if not spec:
        raise MaeBenchError("--ckpt is empty; give a checkpoint path, mae:PATH, supervised:PATH or scratch")
    if spec == "scratch":
        return InitSpec("scratch", None)
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in ("mae", "supervised"):
        if not rest:
            raise MaeBenchError(f"--ckpt {spec} names no checkpoint file after '{prefix}:'")
        return InitSpec(prefix, rest)
    if sep and prefix == "scratch":
        raise MaeBenchError(f"--ckpt {spec}: scratch takes no path (pick the architecture with --arch)")
    if sep and os.path.exists(spec):
        return InitSpec("mae", spec)  # a file whose name happens to hold ':'
    # A word before ':' is a mistyped prefix (or a hub name we cannot reach), not a file name.
    if sep and re.fullmatch(r"[A-Za-z][\w-]*", prefix) and len(prefix) > 1:
        raise MaeBenchError(f"--ckpt {spec}: unknown prefix '{prefix}:' (use mae:PATH, supervised:PATH, "
                            f"scratch or a plain path)")
    return InitSpec("mae", spec)


def _arch_key(arch: str) -> str:
    key = re.sub(r"^mae_|_224$", "", arch)  # accept timm's and the MAE factories' spellings too
    if key not in ARCHS:
        raise MaeBenchError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    return key


def build_vit(arch: str, img_size: int, num_classes: int, global_pool: str = "token",
              drop_path_rate: float = 0.0) -> VisionTransformer:
    """A randomly initialised timm ViT of `arch` with MAE's settings (qkv bias, LayerNorm eps 1e-6).
    global_pool "token": cls token after the final norm (linear probe); "avg": mean of the patch
    tokens, then fc_norm (fine-tuning)."""
    if global_pool not in GLOBAL_POOLS:
        raise MaeBenchError(f"global_pool must be one of {', '.join(GLOBAL_POOLS)}, got {global_pool!r}")
    spec = arch_spec(_arch_key(arch))
    if img_size % spec["patch_size"]:
        raise MaeBenchError(f"image size {img_size} is not a multiple of {arch}'s patch size {spec['patch_size']}")
    # Built directly rather than with timm.create_model: timm has no *_224 model for
    # vit_{tiny,small,base}_patch14 or vit_huge_patch16.
    model = VisionTransformer(img_size=img_size, patch_size=spec["patch_size"], num_classes=num_classes,
                              global_pool=global_pool, embed_dim=spec["embed_dim"], depth=spec["depth"],
                              num_heads=spec["num_heads"], mlp_ratio=4.0, qkv_bias=True,
                              norm_layer=partial(nn.LayerNorm, eps=1e-6), drop_path_rate=drop_path_rate)
    if isinstance(model.head, nn.Linear):  # the official fine-tuning head init
        trunc_normal_(model.head.weight, std=2e-5)
        nn.init.zeros_(model.head.bias)
    return model


def init_encoder(spec: str | InitSpec, *, arch: str | None, img_size: int, num_classes: int,
                 global_pool: str = "token", drop_path_rate: float = 0.0) -> tuple[nn.Module, dict]:
    """The timm ViT that `spec` describes, and {"kind", "ckpt", "arch", "img_size", "global_pool"}.
    Pretrained weights get pos_embed resized to `img_size`; the head (and fc_norm) start fresh."""
    init = spec if isinstance(spec, InitSpec) else parse_init(spec)
    if init.kind == "scratch":
        if arch is None:
            raise MaeBenchError("--ckpt scratch needs --arch")
        name, pretrain = _arch_key(arch), None
        model = build_vit(name, img_size, num_classes, global_pool, drop_path_rate)
    else:
        sd, found = load_encoder(init.path, img_size=img_size, arch=arch)
        name, pretrain = found["arch"], found.get("pretrain")
        model = build_vit(name, img_size, num_classes, global_pool, drop_path_rate)
        check_fit(model.state_dict(), sd, init.path, f"a ViT encoder with global_pool={global_pool}",
                  may_be_missing=_MAY_BE_MISSING, may_be_extra=_UNUSED_WITH_AVG if global_pool == "avg" else ())
        model.load_state_dict(sd, strict=False)
    info = {"kind": init.kind, "ckpt": init.path, "arch": name, "img_size": img_size, "global_pool": global_pool}
    if pretrain:
        info["pretrain"] = pretrain  # the MAE checkpoint's pretraining settings, for the result record
    return model, info
