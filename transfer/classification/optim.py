"""The official MAE classification optimisers: LARS for the linear probe (util/lars.py) and the
layer-wise lr decay groups of fine-tuning (util/lr_decay.py)."""
import torch
import torch.nn as nn

from mae_core.param_groups import layer_decay_groups, vit_layer_id


class Lars(torch.optim.Optimizer):
    """LARS as the official linear probe runs it (MAE util/lars.py, from MoCo v3).

    For a parameter with more than one dimension, d = grad + weight_decay * p is scaled by the trust ratio
    trust_coefficient * ||p|| / ||d|| (1 when either norm is 0), whatever the weight decay; biases and other
    1-D parameters take the plain gradient. Then mu = momentum * mu + d and p -= lr * mu.
    (timm's Lars differs: its ratio divides by ||grad|| + wd * ||p|| + eps, and without weight decay it
    adapts only with always_adapt.)"""

    def __init__(self, params, lr: float = 0.0, weight_decay: float = 0.0, momentum: float = 0.9,
                 trust_coefficient: float = 0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    p_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    ratio = torch.where((p_norm > 0) & (d_norm > 0), group["trust_coefficient"] * p_norm / d_norm,
                                        torch.ones_like(p_norm))
                    d = d.mul(ratio)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(d)
                p.add_(mu, alpha=-group["lr"])
        return loss


def layer_id(name: str, depth: int) -> int:
    """The official ViT layer of a parameter: 0 for the stem (cls_token, pos_embed, patch_embed), i + 1 for
    block i, depth + 1 for everything else (final norm, fc_norm, head)."""
    return vit_layer_id(name, depth)


def param_groups_lrd(model: nn.Module, weight_decay: float, no_weight_decay_list=(), layer_decay: float = 0.75) -> list[dict]:
    """Layer-wise lr decay groups (official util/lr_decay.py): layer l gets lr_scale decay^(depth + 1 - l);
    no weight decay on 1-D parameters and the names in `no_weight_decay_list`. Unlike timm's
    param_groups_layer_decay, the final `norm` (token pooling) is outside the blocks and gets scale 1."""
    depth = len(model.blocks)
    return layer_decay_groups(model, layer_decay, depth, lambda name: layer_id(name, depth),
                              lambda name, p: 0.0 if p.ndim == 1 or name in no_weight_decay_list else weight_decay)
