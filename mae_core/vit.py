"""The timm ViT encoder a `VitArch` describes: timm's VisionTransformer for every variant, timm's Beit for BEiT's.

Layer scale (`init_values`), register tokens (`reg_tokens`), no class token, position embeddings without prefix
slots (`no_embed_class`) and SwiGLU MLPs are timm's own options, so a DINOv2 or DeiT encoder computes what timm's
`vit_*_dinov2` / `deit_*` models compute. DeiT's distillation token rides in timm's register slot: DeiT's
DistilledVisionTransformer concatenates (cls, dist, patches) and adds a position slot to each, as timm does for
(cls, reg, patches) with no_embed_class=False.

BEiT, BEiT v2 and data2vec encoders are timm's `Beit` (the blocks of unilm's beit/modeling_finetune.py: q and v
biases, `gamma_1` / `gamma_2`, a relative position table per block), with the same attribute names the tasks use
(`blocks`, `norm`, `fc_norm`, `head`, `cls_token`, `pos_embed`, `patch_embed`, `forward_features`, `forward_head`).
"""
from functools import partial

import torch.nn as nn
from timm.layers import SwiGLUPacked, trunc_normal_
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer

from .archs import VitArch
from .errors import MaeBenchError

GLOBAL_POOLS = ("token", "avg")


class BeitEncoder(Beit):
    """timm's Beit whose weight-decay exemptions are BEiT's fine-tuning ones (run_class_finetuning.py: the model's
    no_weight_decay() = pos_embed and cls_token; the relative position tables decay unless
    --disable_weight_decay_on_rel_pos_bias, off by default); timm's Beit also exempts the tables."""

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}


def vit_encoder(arch: VitArch, img_size: int, num_classes: int, global_pool: str = "token",
                drop_path_rate: float = 0.0) -> VisionTransformer | BeitEncoder:
    """A randomly initialised timm ViT of `arch` (LayerNorm eps arch.norm_eps: 1e-6 for MAE, timm, DINO).
    global_pool "token": class token after the final norm (linear probe); "avg": mean of the patch tokens,
    then fc_norm (fine-tuning); "" (timm's no pooling): the dense tasks read the tokens, the final norm is kept."""
    if global_pool not in GLOBAL_POOLS and global_pool != "":
        raise MaeBenchError(f"global_pool must be one of {', '.join(GLOBAL_POOLS)}, got {global_pool!r}")
    if global_pool == "token" and not arch.class_token:
        raise MaeBenchError(f"{arch.name} has no class token; use model.global_pool=avg")
    if img_size % arch.patch_size:
        raise MaeBenchError(f"image size {img_size} is not a multiple of {arch.name}'s patch size {arch.patch_size}")
    # Built directly rather than with timm.create_model: timm has no *_224 model for
    # vit_{tiny,small,base}_patch14 or vit_huge_patch16, nor for a researcher's own size.
    if arch.beit:
        model = BeitEncoder(
            img_size=img_size, patch_size=arch.patch_size, in_chans=arch.in_chans, num_classes=num_classes,
            global_pool=global_pool, embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads,
            mlp_ratio=arch.mlp_ratio, qkv_bias=arch.qkv_bias, init_values=1.0 if arch.layer_scale else None,
            use_abs_pos_emb=arch.abs_pos, use_rel_pos_bias=arch.rel_pos_bias, use_shared_rel_pos_bias=False,
            norm_layer=partial(nn.LayerNorm, eps=arch.norm_eps), drop_path_rate=drop_path_rate)
    else:
        model = VisionTransformer(
            img_size=img_size, patch_size=arch.patch_size, in_chans=arch.in_chans, num_classes=num_classes,
            global_pool=global_pool, embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads,
            mlp_ratio=arch.mlp_ratio, qkv_bias=arch.qkv_bias, class_token=arch.class_token,
            reg_tokens=arch.reg_tokens + int(arch.dist_token), no_embed_class=arch.no_embed_class,
            init_values=1.0 if arch.layer_scale else None, norm_layer=partial(nn.LayerNorm, eps=arch.norm_eps),
            drop_path_rate=drop_path_rate, **({"mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU} if arch.swiglu else {}))
    if isinstance(model.head, nn.Linear):  # the official fine-tuning head init
        trunc_normal_(model.head.weight, std=2e-5)
        nn.init.zeros_(model.head.bias)
    return model
