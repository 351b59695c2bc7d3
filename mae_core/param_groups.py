"""One builder of optimiser parameter groups with layer-wise lr decay, for every task that fine-tunes a ViT.

BEiT, MAE (util/lr_decay.py), mmsegmentation (LearningRateDecayOptimizerConstructor) and ViTDet
(get_vit_lr_decay_rate) share the rule: a parameter of layer l (0 the patch embedding, i + 1 block i, depth + 1
whatever comes after the blocks) trains at lr x decay^(depth + 1 - l). What differs between them is only which
layer a parameter name belongs to and which parameters are decayed, so a task passes those two functions.
(Pretraining has no layer decay and uses timm's `param_groups_weight_decay`, as the official main_pretrain.py.)
"""
from collections.abc import Callable

import torch.nn as nn


def layer_decay_groups(model: nn.Module, layer_decay: float, depth: int, layer_id: Callable[[str], int],
                       weight_decay: Callable[[str, nn.Parameter], float]) -> list[dict]:
    """Groups of `model`'s trainable parameters: lr_scale layer_decay^(depth + 1 - layer_id(name)), weight decay
    `weight_decay(name, param)`. One group per (layer, weight decay), in the order of their first parameter,
    as the references build them (MAE's and mmseg's per layer and decayed-or-not; detectron2 merges groups of
    equal settings, which is the same grouping for any layer_decay other than 1)."""
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid, wd = layer_id(name), weight_decay(name, p)
        group = groups.setdefault((lid, wd), {"params": [], "weight_decay": wd,
                                              "lr_scale": layer_decay ** (depth + 1 - lid)})
        group["params"].append(p)
    return list(groups.values())


def vit_layer_id(name: str, depth: int, prefix: str = "") -> int:
    """The MAE / BEiT / mmseg layer of a timm ViT parameter named `prefix` + timm's name: 0 for the stem
    (cls_token, pos_embed, patch_embed, and the extra tokens beside the class token: reg_token, which also holds
    DeiT's dist_token, as timm's group_matcher puts them in the stem), i + 1 for block i (BEiT's per-block
    relative position tables and gamma_1 / gamma_2 too), depth + 1 for the rest (where BEiT's get_num_layer_for_vit
    also puts a shared `rel_pos_bias`, which our BEiT encoders never have: it is copied into the blocks)."""
    if not name.startswith(prefix):
        return depth + 1
    name = name[len(prefix):]
    if name in ("cls_token", "pos_embed", "reg_token", "dist_token") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1
