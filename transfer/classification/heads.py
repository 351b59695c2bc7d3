"""Which parameters each ImageNet protocol trains, and the heads they put on the encoder."""
import torch.nn as nn
from timm.layers import trunc_normal_

PROTOCOLS = ("linear", "partial", "finetune")


def linear_probe_head(model: nn.Module) -> nn.Module:
    """The paper's linear-probe head: BatchNorm without affine (eps 1e-6) before the classifier
    (trunc-normal std 0.01); BN only whitens features, so it is still a linear classifier."""
    head = model.head
    trunc_normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    model.head = nn.Sequential(nn.BatchNorm1d(head.in_features, affine=False, eps=1e-6), head)
    return model


def finetune_head(model: nn.Module) -> nn.Module:
    """The official fine-tuning head init: trunc-normal std 2e-5, zero bias."""
    trunc_normal_(model.head.weight, std=2e-5)
    nn.init.zeros_(model.head.bias)
    return model


def set_trainable(model: nn.Module, protocol: str, blocks: int = 0, part: str = "all") -> list[str]:
    """Freeze everything, then unfreeze what the protocol trains; returns the trainable names.
    linear: the head; partial: the last `blocks` blocks + final norm (norm / fc_norm) + head
    (blocks=0: the head alone on frozen features); with part="mlp" only the MLP sub-block (norm2 + mlp + its layer
    scale, timm ViT's ls2 / BEiT's gamma_2) of those blocks is tuned (the paper's "MLP only" point of Figure 9);
    finetune: everything.
    Frozen blocks are a fixed feature extractor, so their drop path becomes the identity."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    depth = len(model.blocks)
    if protocol == "partial" and not 0 <= blocks <= depth:
        raise ValueError(f"blocks must be between 0 and {depth} for this encoder, got {blocks}")
    if part not in ("all", "mlp"):
        raise ValueError(f"blocks_part must be all or mlp, got {part!r}")
    first_tuned = {"linear": depth, "partial": depth - blocks, "finetune": 0}[protocol]
    for name, p in model.named_parameters():
        if protocol == "finetune":
            p.requires_grad = True
        elif name.startswith("head."):
            p.requires_grad = True
        elif protocol == "partial" and blocks > 0 and name.startswith(("norm.", "fc_norm.")):
            p.requires_grad = True
        elif protocol == "partial" and name.startswith("blocks."):
            _, index, sub = name.split(".", 2)
            p.requires_grad = int(index) >= first_tuned and (part == "all" or
                                                             sub.startswith(("mlp.", "norm2.", "ls2.", "gamma_2")))
        else:
            p.requires_grad = False
    for block in model.blocks[:first_tuned]:
        block.drop_path1, block.drop_path2 = nn.Identity(), nn.Identity()
    return [n for n, p in model.named_parameters() if p.requires_grad]
