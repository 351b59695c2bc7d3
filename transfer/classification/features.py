"""Frozen pre-logit features of a whole loader: what k-NN scores and the cached linear probe trains its head on."""
import torch
import torch.nn as nn

from .data import drop_bad


@torch.no_grad()
def extract_features(model: nn.Module, loader, device: str, read: list | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pre-logit features in fp32 (the cls token after the final norm, or the pooled tokens after fc_norm: what the
    linear head sees), labels, and how many unreadable samples were dropped; `read`, when given, gets each batch's
    mask of the samples kept (to tell each feature's image in predictions.csv)."""
    model.eval()
    feats, labels, dropped = [], [], 0
    for batch in loader:
        if read is not None:
            read.append(torch.as_tensor(batch[2], dtype=torch.bool))
        x, y, bad = drop_bad(batch)
        feats.append(model.forward_head(model.forward_features(x.to(device)), pre_logits=True).float().cpu())
        labels.append(y)
        dropped += bad
    return torch.cat(feats), torch.cat(labels), dropped
