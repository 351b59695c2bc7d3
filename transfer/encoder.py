"""A timm ViT (or BEiT) encoder from any init: a checkpoint of any registered format, our supervised baseline, or
random.

`--ckpt PATH` (format detected), `--ckpt FORMAT:PATH` (forced; `mae:PATH` and `supervised:PATH` among them) and
`--ckpt scratch` (with `--arch`) all end here, so every downstream task starts from the same model and the same
key checks: read once, detect, map (mae_core.formats), build (mae_core.vit), check the fit once.
"""
import os
import re
from dataclasses import dataclass, field

import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from mae_core.archs import VitArch, arch_spec
from mae_core import feature_rules
from mae_core.errors import MaeBenchError
from mae_core.formats import FORMATS, known_formats
from mae_core.vit import GLOBAL_POOLS, BeitEncoder, vit_encoder
from mae_core.weights import fit_encoder, heads_override, load_encoder

__all__ = ["GLOBAL_POOLS", "InitSpec", "parse_init", "build_vit", "init_encoder", "refuse_variants"]
# Keys a pretrained encoder may lack: the classifier is always new, and so is fc_norm
# (MAE fine-tuning drops the pretrained `norm` and starts a fresh fc_norm after avg pooling).
_MAY_BE_MISSING = {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
_UNUSED_WITH_AVG = {"norm.weight", "norm.bias"}  # timm's avg-pool ViT has no final norm
_AVG_DROPS_NORM = "final norm (global average pooling starts a fresh fc_norm, as MAE fine-tuning)"


@dataclass(frozen=True)
class InitSpec:
    kind: str  # "scratch", or a checkpoint format (mae_core.formats: "mae", "supervised", "dinov2", ...)
    path: str | None
    forced: bool = field(default=False, compare=False)  # FORMAT:PATH given (else detected; kind says "mae")


def parse_init(spec: str) -> InitSpec:
    """`scratch`, `FORMAT:PATH` (mae:, supervised:, dinov2:, ...) or a plain `PATH` (format detected)."""
    spec = (spec or "").strip()
    if not spec:
        raise MaeBenchError("--ckpt is empty; give a checkpoint path, FORMAT:PATH or scratch")
    if spec == "scratch":
        return InitSpec("scratch", None)
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in FORMATS:
        if not rest:
            raise MaeBenchError(f"--ckpt {spec} names no checkpoint file after '{prefix}:'")
        return InitSpec(prefix, rest, forced=True)
    if sep and prefix == "scratch":
        raise MaeBenchError(f"--ckpt {spec}: scratch takes no path (pick the architecture with --arch)")
    if sep and os.path.exists(spec):
        return InitSpec("mae", spec)  # a file whose name happens to hold ':'
    # A word before ':' is a mistyped prefix (or a hub name we cannot reach), not a file name.
    if sep and re.fullmatch(r"[A-Za-z][\w-]*", prefix) and len(prefix) > 1:
        raise MaeBenchError(f"--ckpt {spec}: unknown prefix '{prefix}:' (known formats: {known_formats()}; or "
                            f"scratch, or a plain path)")
    return InitSpec("mae", spec)


def _arch_of(arch: str) -> VitArch:
    return VitArch(**arch_spec(arch))


def build_vit(arch: str | VitArch, img_size: int, num_classes: int, global_pool: str = "token",
              drop_path_rate: float = 0.0) -> VisionTransformer | BeitEncoder:
    """A randomly initialised timm ViT (timm Beit for a BEiT arch) of `arch` (a name, or a VitArch with its
    variants); see mae_core.vit."""
    return vit_encoder(arch if isinstance(arch, VitArch) else _arch_of(arch), img_size, num_classes, global_pool,
                       drop_path_rate)


def _report(path: str, info: dict) -> None:
    spec: VitArch = info["spec"]
    variants = ", ".join(spec.variants()) or "plain"
    print(f"checkpoint {path}: format {info['format']}, {spec.name} ({variants}; {spec.num_heads} heads)")
    if info["dropped"]:
        why: dict[str, list[str]] = {}
        for key, reason in info["dropped"].items():
            why.setdefault(reason, []).append(key)
        parts = [f"{reason}: {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                 for reason, keys in why.items()]
        print(f"checkpoint {path}: {len(info['dropped'])} keys left out on purpose: {'; '.join(parts)}")


def _features(model: nn.Module, info: dict, option: str, probe: str, arch: VitArch, method, source: str) -> None:
    """Apply `model.features` (mae_core.feature_rules): "paper" leaves the model as built (global_pool's token);
    "method" makes it read the format's own rule (the class-token rule is what it reads already). Recorded in
    info["features"]: the option, the rule, its reference and the feature width."""
    feature_rules.check_option(option)
    if probe is None:  # ViTDet / UperNet read every token
        if option != "paper":
            raise MaeBenchError(f"model.features={option} is for the linear probe and k-NN")
        return
    rule = feature_rules.resolve(option, probe, method, arch, info["global_pool"], source)
    if rule is not None and rule.name != "cls":
        feature_rules.use_rule(model, rule)
    name = rule.name if rule is not None else ("cls" if info["global_pool"] == "token" else "avg")
    width = rule.width(arch.embed_dim, arch.depth) if rule is not None else arch.embed_dim
    info["features"] = {"option": option, "rule": name, "width": width,
                        **({"source": rule.source} if rule is not None else {})}
    if rule is not None:
        print(f"features: {method.method}'s {probe} rule {name}, {width} wide ({rule.source})")


def init_encoder(spec: str | InitSpec, *, arch: str | VitArch | None, img_size: int, num_classes: int,
                 global_pool: str | None = "token", drop_path_rate: float = 0.0, features: str = "paper",
                 probe: str | None = None, num_heads: int | None = None) -> tuple[nn.Module, dict]:
    """The timm ViT that `spec` describes, and {"kind", "ckpt", "arch", "img_size", "global_pool", "features"} plus,
    for a checkpoint, "format", "method", "sha256", "arch_spec" (the resolved VitArch as a dict), "dropped"
    (key -> why) and "pretrain" (plain data: it goes into checkpoints' configs).
    Pretrained weights get pos_embed resized to `img_size`; the head (and fc_norm) start fresh. `features`
    ("paper" | "method") picks the pooled features `probe` reads ("linear", "knn"; the classification tasks pass
    their protocol, and only they record "features": ViTDet and UperNet read every token, pass None). global_pool
    None (a dense task reads the tokens): "token" for an encoder with a class token, else "" (timm's no pooling).
    `arch` may be a VitArch (a trained model's recorded encoder, variants included) for `scratch`. num_heads: the
    recipe's model.num_heads (None: --arch's or the checkpoint's heads)."""
    init = spec if isinstance(spec, InitSpec) else parse_init(spec)
    if init.kind == "scratch":
        if arch is None:
            raise MaeBenchError("--ckpt scratch needs --arch")
        vit_arch = arch if isinstance(arch, VitArch) else _arch_of(arch)
        if not isinstance(arch, VitArch):
            heads_override(arch, num_heads, "--ckpt scratch")  # --arch names the heads; model.num_heads must agree
        if global_pool is None:
            global_pool = "token" if vit_arch.class_token else ""
        model = build_vit(vit_arch, img_size, num_classes, global_pool, drop_path_rate)
        info = {"kind": "scratch", "ckpt": None, "arch": vit_arch.name, "img_size": img_size,
                "global_pool": global_pool}
        _features(model, info, features, probe, vit_arch, None, "--ckpt scratch")
        return model, info
    sd, found = load_encoder(init.path, img_size=img_size, arch=arch.name if isinstance(arch, VitArch) else arch,
                             fmt=init.kind if init.forced else None, check=False, num_heads=num_heads)
    vit_arch: VitArch = found["spec"]
    if global_pool is None:
        global_pool = "token" if vit_arch.class_token else ""
    model = build_vit(vit_arch, img_size, num_classes, global_pool, drop_path_rate)
    avg = global_pool == "avg"
    fit_encoder(model.state_dict(), sd, init.path, f"a {vit_arch.name} encoder with global_pool={global_pool}",
                found["format"], may_be_missing=_MAY_BE_MISSING, may_be_extra=_UNUSED_WITH_AVG if avg else ())
    model.load_state_dict(sd, strict=False)
    dropped = dict(found["dropped"])
    if avg:
        dropped.update({k: _AVG_DROPS_NORM for k in _UNUSED_WITH_AVG if k in sd})
    form = FORMATS[found["format"]]
    info = {"kind": found["kind"], "ckpt": init.path, "arch": vit_arch.name, "img_size": img_size,
            "global_pool": global_pool, "format": found["format"], "method": form.method, "sha256": found["sha256"],
            "arch_spec": vit_arch.as_dict(), "dropped": dropped}
    _report(init.path, {**found, "dropped": dropped})
    _features(model, info, features, probe, vit_arch, form.features,
              f"checkpoint {init.path} (format {form.name})")
    if found.get("pretrain"):
        info["pretrain"] = found["pretrain"]  # the MAE checkpoint's pretraining settings, for the result record
    return model, info


def refuse_variants(info: dict, task: str) -> None:
    """One error line when the encoder is a variant `task` cannot take (layer scale, registers, a distillation
    token, no class token, BEiT's blocks and relative position tables, ...): those tasks' backbones are built for
    the MAE paper's ViT."""
    spec = info.get("arch_spec")
    if spec is None:
        return
    arch = VitArch(**{k: v for k, v in spec.items() if k != "name"})
    if not arch.plain:
        raise MaeBenchError(f"{task} takes the MAE paper's plain ViT; {info.get('ckpt')} ({info['format']}) has "
                            f"{', '.join(arch.variants())}")
