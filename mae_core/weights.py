"""What a checkpoint's weights are: the ViT its shapes name, its encoder in timm's names, the pretraining it
records; loading that encoder (for every task and export) or the whole MAE (for pictures)."""
import argparse
import os
import re

import torch

from .archs import ARCHS, arch_name
from .checkpoint import check_fit, read_checkpoint
from .errors import MaeBenchError
from .pos_embed import resize_pos_embed
from .pretrain_knobs import PRETRAIN_KEYS

_WRAPPER_PREFIX = re.compile(r"^(?:module\.|_orig_mod\.)+")  # DDP, torch.compile
_NON_ENCODER = ("decoder_", "mask_token", "encoder_mask_token", "head.", "fc_norm.")


def extract_state_dict(ckpt: dict, source: str = "checkpoint") -> dict:
    """The tensors under the first of "model", "state_dict" or "model_ema" that holds any, or the dict itself;
    `module.` prefixes stripped."""
    for key in ("model", "state_dict", "model_ema"):  # an empty "model" ({} beside "state_dict") is passed over
        if isinstance(ckpt.get(key), dict) and any(isinstance(v, torch.Tensor) for v in ckpt[key].values()):
            candidate = ckpt[key]
            break
    else:
        candidate = ckpt
    sd = {_WRAPPER_PREFIX.sub("", k): v for k, v in candidate.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise MaeBenchError(f"{source} holds no weights (top-level keys: {', '.join(map(str, list(ckpt)[:8]))})")
    return sd


def _count(sd: dict, prefix: str) -> int:
    found = {m.group(1) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return len(found)


def _decoder_heads(width: int) -> int:
    # Heads change no shape, so they cannot be read back; a checkpoint config wins over this.
    # The official decoder is 512 wide with 16 heads, i.e. 32-wide heads; assume the same.
    heads = max(1, width // 32)
    while width % heads:
        heads -= 1
    return heads


def infer_mae_arch(state_dict: dict, source: str = "checkpoint") -> dict:
    """A full MAE's architecture from tensor shapes (for load_mae; encoders of every format: formats.infer_arch):
    arch, patch_size, embed_dim, depth, num_heads, grid, decoder sizes."""
    proj = state_dict.get("patch_embed.proj.weight")
    if proj is None or proj.ndim != 4:
        keys = ", ".join(list(state_dict)[:6])
        raise MaeBenchError(f"{source} does not hold a ViT encoder (no patch_embed.proj.weight); keys look like: {keys}...")
    embed_dim, in_chans, patch_size = proj.shape[0], proj.shape[1], proj.shape[2]
    depth = _count(state_dict, "blocks.")
    name = arch_name(patch_size, embed_dim, depth)
    if name is None:
        known = ", ".join(f"{n} ({s['patch_size']}/{s['embed_dim']}/{s['depth']})" for n, s in ARCHS.items())
        raise MaeBenchError(f"{source} holds an unknown ViT: patch {patch_size}, width {embed_dim}, depth {depth} "
                            f"(patch/width/depth known: {known})")
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    info = dict(arch=name, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, depth=depth,
                num_heads=ARCHS[name]["num_heads"], mlp_ratio=fc1.shape[0] / embed_dim if fc1 is not None else 4.0,
                grid=None, img_size=None, mask_tokens_in_encoder="encoder_mask_token" in state_dict)
    pos = state_dict.get("pos_embed")
    if pos is not None:
        n = pos.shape[1] - 1  # one prefix (class) token
        side = int(round(n ** 0.5))
        if side * side != n:
            raise MaeBenchError(f"{source}: pos_embed {list(pos.shape)} is not a class token plus a square grid")
        info.update(grid=(side, side), img_size=side * patch_size)
    dec = state_dict.get("decoder_embed.weight")
    info["has_decoder"] = dec is not None
    if dec is not None:
        info.update(decoder_embed_dim=dec.shape[0], decoder_depth=_count(state_dict, "decoder_blocks."),
                    decoder_num_heads=_decoder_heads(dec.shape[0]))
    return info


def encoder_state_dict(state_dict: dict) -> dict:
    """The encoder weights in timm `VisionTransformer` names (no decoder, mask tokens, head or fc_norm).

    A classifier fine-tuned with global average pooling (official MAE fine-tuning, our supervised
    baseline) has `fc_norm` in place of the final `norm`; its `fc_norm` becomes the encoder's `norm`,
    the LayerNorm that last saw the features."""
    # fc_norm/head belong to a classifier (timm's avg-pool head); a downstream task builds its own.
    sd = {k: v for k, v in state_dict.items() if not k.startswith(_NON_ENCODER)}
    if "norm.weight" not in sd and "fc_norm.weight" in state_dict:
        sd.update({f"norm.{p}": state_dict[f"fc_norm.{p}"] for p in ("weight", "bias") if f"fc_norm.{p}" in state_dict})
    return sd


def _grid_for(img_size, patch_size: int, source: str) -> tuple[int, int]:
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if h % patch_size or w % patch_size:
        raise MaeBenchError(f"{source}: image size {img_size} is not a multiple of the patch size {patch_size}")
    return h // patch_size, w // patch_size


def _resize(sd: dict, keys, grid) -> None:
    for key in keys:
        if key in sd:
            sd[key] = resize_pos_embed(sd[key], grid)


def _read_weights(path: str) -> tuple[dict, dict, dict]:
    """(the file's top-level dict, its tensors, the ViT they are)."""
    ckpt = read_checkpoint(path)
    sd = extract_state_dict(ckpt, path)
    return ckpt, sd, infer_mae_arch(sd, path)


def load_mae(path, **overrides):
    """Build the MAE a checkpoint holds (arch from shapes, settings from its config) and load it strictly."""
    from .models_mae import MaskedAutoencoderViT
    path = os.fspath(path)
    ckpt, sd, info = _read_weights(path)
    if not info["has_decoder"]:
        raise MaeBenchError(f"{path} holds an encoder only (no decoder), so it cannot reconstruct images")
    kwargs = {k: info[k] for k in ("patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio",
                                   "decoder_embed_dim", "decoder_depth", "decoder_num_heads",
                                   "mask_tokens_in_encoder", "img_size")}
    config = ckpt.get("config")
    if isinstance(config, dict):  # ours: settings that no shape reveals
        kwargs.update({k: config[k] for k in ("norm_pix_loss", "mask_strategy", "num_heads", "decoder_num_heads")
                       if k in config})
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace) and hasattr(args, "norm_pix_loss"):  # official MAE
        kwargs["norm_pix_loss"] = bool(args.norm_pix_loss)
    kwargs.update(overrides)
    grid = _grid_for(kwargs["img_size"], info["patch_size"], path)
    if info["grid"] is not None and grid != info["grid"]:
        _resize(sd, ("pos_embed", "decoder_pos_embed"), grid)  # fixed sin-cos: resampling is faithful
    try:
        model = MaskedAutoencoderViT(**kwargs)
    except ValueError as exc:
        raise MaeBenchError(f"cannot build the MAE of {path}: {exc}") from None
    check_fit(model.state_dict(), sd, path, f"mae_{info['arch']}")
    model.load_state_dict(sd, strict=True)
    info.update(img_size=kwargs["img_size"], epoch=ckpt.get("epoch"), config=dict(model.config))
    return model, info


_OFFICIAL_ARGS = {"model": ("mask_ratio", "norm_pix_loss", "input_size"), "schedule": ("epochs", "batch_size", "accum_iter")}


def pretrain_summary(ckpt: dict) -> dict | None:
    """The pretraining settings a checkpoint records (ours: its recipe; official MAE: its `args`), as
    {"model": {...}, "schedule": {...}, "data": {...}, "epochs_done": int}; None when it records none
    (timm, supervised or encoder-only files). Result records carry it so tables can plot Figure 5 / Table 1."""
    config, args = ckpt.get("config"), ckpt.get("args")
    recipe = config.get("recipe") if isinstance(config, dict) else None
    if isinstance(recipe, dict) and isinstance(recipe.get("model"), dict) and "mask_ratio" in recipe["model"]:
        found = {sec: {k: recipe.get(sec, {}).get(k) for k in names} for sec, names in PRETRAIN_KEYS.items()}
    elif isinstance(args, argparse.Namespace) and hasattr(args, "mask_ratio"):
        found = {sec: {k: getattr(args, k, None) for k in names} for sec, names in _OFFICIAL_ARGS.items()}
    else:
        return None
    if isinstance(ckpt.get("epoch"), int):
        found["epochs_done"] = ckpt["epoch"] + 1
    return found


def _check_values(sd: dict, source: str) -> None:
    """Refuse weights no trained ViT has: integer tensors, NaN / Inf, or magnitudes past MAX_ABS_WEIGHT."""
    for key, v in sd.items():
        if not v.is_floating_point():
            raise MaeBenchError(f"checkpoint {source}: {key} holds {str(v.dtype).replace('torch.', '')} values, not "
                                "floating-point weights")
        if v.numel() and not bool(torch.isfinite(v).all()):
            raise MaeBenchError(f"checkpoint {source}: {key} holds non-finite values (NaN or Inf)")
        if v.numel() and float(v.abs().max()) > MAX_ABS_WEIGHT:
            raise MaeBenchError(f"checkpoint {source}: {key} holds |w| up to {float(v.abs().max()):.3g}, past any "
                                f"trained ViT's weights (limit {MAX_ABS_WEIGHT:g})")


MAX_ABS_WEIGHT = 1e6  # fp16 overflows at 65504; trained ViT weights stay far below 1e3


def load_encoder(path, img_size=None, arch=None, fmt=None, check=True, num_heads=None):
    """Read `path` once, detect its format (or take `fmt`), map it to timm names, infer the architecture, check
    the values; returns (encoder tensors, info). pos_embed is resized to `img_size` when given. `arch` (a table
    name or vit_w<D>_d<N>_h<H>_patch<P>) must agree with the tensors and sets the heads; so does `num_heads`
    (the recipe's model.num_heads), which must divide the width and agree with `arch`. info: arch (name), spec
    (VitArch), format, kind, sha256, dropped (key -> why), pretrain, patch_size, embed_dim, depth, num_heads,
    grid and img_size (of the returned pos_embed). With `check`, the tensors are fit once against the encoder
    (token pooling, no head) built on the meta device; init_encoder checks against its own model instead."""
    from .archs import arch_key, arch_spec
    from .checkpoint import read_checkpoint_hashed
    from .formats import detect_format, get_format, infer_arch, pos_grid
    path = os.fspath(path)
    top, sha = read_checkpoint_hashed(path)  # one read: the sha256 comes from the same bytes
    form = get_format(fmt) if fmt else detect_format(top, path)
    try:
        mapped = form.map(top)
    except MaeBenchError as exc:  # a mapping's refusal, named after the file
        msg = str(exc) if path in str(exc) else f"checkpoint {path} (format {form.name}): {exc}"
        raise MaeBenchError(msg) from None
    wanted = arch_spec(arch) if arch else None
    if not mapped.weights:
        raise MaeBenchError(f"checkpoint {path} read as {form.name} holds no encoder weights")
    spec = infer_arch(mapped.weights, mapped.hints, path)
    if wanted and (wanted["patch_size"], wanted["embed_dim"], wanted["depth"]) != (spec.patch_size, spec.embed_dim, spec.depth):
        raise MaeBenchError(f"checkpoint {path} is {spec.name} but --arch says {arch_key(arch)}")
    heads = heads_override(arch, num_heads, path)
    if heads is not None:
        spec = infer_arch(mapped.weights, mapped.hints, path, heads)  # --arch / model.num_heads set the heads
    sd = dict(mapped.weights)
    if spec.dist_token:  # DeiT's distillation token rides in timm's register slot (mae_core.vit)
        sd["reg_token"] = sd.pop("dist_token")
    _check_values(sd, path)
    grid = pos_grid(sd, spec)
    info = dict(arch=spec.name, spec=spec, format=form.name, kind=form.kind, sha256=sha,
                dropped=dict(mapped.dropped), pretrain=pretrain_summary(top), patch_size=spec.patch_size,
                in_chans=spec.in_chans, embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads,
                mlp_ratio=spec.mlp_ratio, grid=grid, img_size=grid[0] * spec.patch_size,
                has_decoder=any(k.startswith("decoder_") for k in mapped.dropped))
    if img_size is not None:
        new = _grid_for(img_size, spec.patch_size, path)
        if new != grid and spec.abs_pos:
            sd = {**sd, "pos_embed": resize_pos_embed(sd["pos_embed"], new, 0 if spec.no_embed_class else
                                                      spec.prefix_tokens, offset=spec.pos_offset,
                                                      antialias=spec.pos_antialias)}
        if spec.rel_pos_bias:  # BEiT's relative position tables, resized as BEiT's fine-tuning does
            sd = _resize_rel_pos_tables(sd, new, path)
        info.update(grid=new, img_size=img_size)
    if check:
        from .vit import vit_encoder
        with torch.device("meta"):
            model = vit_encoder(spec, info["img_size"], 0, "token" if spec.class_token else "")  # "": keeps the norm
        fit_encoder(model.state_dict(), sd, path, f"a {spec.name} encoder", form.name)
    return sd, info


def heads_override(arch: str | None, num_heads: int | None, source) -> int | None:
    """The number of heads --arch (`arch`) or the recipe's model.num_heads sets, None when neither does (the format's
    config or convention then decides); both given must agree."""
    from .archs import arch_key, arch_spec
    if num_heads is not None and (isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1):
        raise MaeBenchError(f"model.num_heads={num_heads!r} must be a positive integer (or None: inferred)")
    named = arch_spec(arch) if arch else None
    if named is not None and num_heads is not None and named["num_heads"] != num_heads:
        raise MaeBenchError(f"{source}: --arch {arch_key(arch)} has {named['num_heads']} heads but model.num_heads="
                            f"{num_heads}; give one of them (--arch vit_w{named['embed_dim']}_d{named['depth']}_h"
                            f"{num_heads}_patch{named['patch_size']} names those heads)")
    if num_heads is not None:
        return num_heads
    return named["num_heads"] if named else None


def _resize_rel_pos_tables(sd: dict, grid: tuple[int, int], path: str) -> dict:
    from .pos_embed import rel_pos_grid, resize_rel_pos_table
    out = dict(sd)
    for key, table in sd.items():
        if key.endswith("relative_position_bias_table") and rel_pos_grid(table) != grid[0]:
            try:
                out[key] = resize_rel_pos_table(table, grid)
            except ValueError as exc:
                raise MaeBenchError(f"checkpoint {path}: {key}: {exc}") from None
    return out


def fit_encoder(expected: dict, sd: dict, path, what: str, fmt: str, may_be_missing=(), may_be_extra=()) -> None:
    """The one fit check of a loaded encoder: keys it would not use are refused first (each changes the output:
    a gamma, a relative position table, a token, a bias), then check_fit's missing / mis-shaped keys."""
    unused = [k for k in sd if k not in expected and k not in may_be_extra]
    if unused:
        more = "..." if len(unused) > 4 else ""
        raise MaeBenchError(f"checkpoint {path} (format {fmt}): {len(unused)} key(s) the encoder would not use change "
                            f"its output ({', '.join(unused[:4])}{more}); refusing to drop them")
    check_fit(expected, sd, path, what, may_be_missing=may_be_missing, may_be_extra=may_be_extra)
