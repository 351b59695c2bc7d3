"""`mae-bench export --to detectron2`: an encoder under the names detectron2's ViTDet backbone expects."""
import os

import torch

from mae_core.checkpoint import atomic_write, load_encoder

from .model import to_patch16, vitdet_pretrain_size

PREFIX = "backbone.net."
# Not in ViTDet's ViT: the cls token (its slot stays in pos_embed, as pretrain_use_cls_token=True
# expects) and the final norm. The relative position tables are ViTDet's own (zero-initialised).
_DROPPED = ("cls_token", "norm.weight", "norm.bias")


def detectron2_state_dict(ckpt_path) -> tuple[dict, dict]:
    """({"backbone.net.<timm name>": tensor}, arch info) for any checkpoint `load_encoder` reads;
    pos_embed stays at its pretraining grid (ViTDet resizes it itself, from pretrain_img_size). A patch-14
    encoder is converted to patch 16 as ViTDet's ViT-H config expects (mae_pretrain_vit_huge_p14to16)."""
    enc, info = load_encoder(ckpt_path)
    patch = enc["patch_embed.proj.weight"].shape[-1]
    enc = to_patch16({k: v for k, v in enc.items() if k not in _DROPPED}, info["img_size"])
    sd = {PREFIX + k: v.detach().contiguous().clone() for k, v in enc.items()}
    return sd, {**info, "img_size": vitdet_pretrain_size(patch, info["img_size"])}


def export_detectron2(ckpt_path, out_path) -> str:
    """Write {"model": state_dict} (.pth, what DetectionCheckpointer loads without matching heuristics)
    or a flat .safetensors file; returns the arch name."""
    sd, info = detectron2_state_dict(ckpt_path)
    out_path = os.fspath(out_path)
    if out_path.endswith(".safetensors"):
        from safetensors.torch import save_file
        meta = {"format": "pt", "arch": info["arch"], "pretrain_img_size": str(info["img_size"])}
        atomic_write(out_path, lambda tmp: save_file(sd, tmp, metadata=meta))
    else:
        payload = {"model": sd, "__author__": "mae-bench", "arch": info["arch"], "pretrain_img_size": info["img_size"]}
        atomic_write(out_path, lambda tmp: torch.save(payload, tmp))
    return info["arch"]
