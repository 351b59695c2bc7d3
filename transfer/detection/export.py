"""`mae-bench export --to detectron2`: an encoder under the names detectron2's ViTDet backbone expects."""
from mae_core.weights import load_encoder
from mae_core.export import write_weights
from transfer.encoder import refuse_variants

from .model import DROPPED, to_patch16, vitdet_pretrain_size

PREFIX = "backbone.net."


def detectron2_state_dict(ckpt_path) -> tuple[dict, dict]:
    """({"backbone.net.<timm name>": tensor}, arch info) for any checkpoint `load_encoder` reads;
    pos_embed stays at its pretraining grid (ViTDet resizes it itself, from pretrain_img_size). A patch-14
    encoder is converted to patch 16 as ViTDet's ViT-H config expects (mae_pretrain_vit_huge_p14to16)."""
    enc, info = load_encoder(ckpt_path)
    refuse_variants({**info, "arch_spec": info["spec"].as_dict(), "ckpt": str(ckpt_path)}, "the detectron2 export")
    patch = enc["patch_embed.proj.weight"].shape[-1]
    enc = to_patch16({k: v for k, v in enc.items() if k not in DROPPED}, info["img_size"])
    sd = {PREFIX + k: v for k, v in enc.items()}
    return sd, {**info, "img_size": vitdet_pretrain_size(patch, info["img_size"])}


def export_detectron2(ckpt_path, out_path) -> str:
    """Write {"model": state_dict} (.pth, what DetectionCheckpointer loads without matching heuristics)
    or a flat .safetensors file; returns the arch name."""
    sd, info = detectron2_state_dict(ckpt_path)
    write_weights(out_path, sd, {"arch": info["arch"], "pretrain_img_size": info["img_size"]}, under_model=True)
    return info["arch"]
