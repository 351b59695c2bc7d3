"""Top-1 / top-5 over a whole evaluation set, summed across processes."""
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from mae_core.distributed import DistInfo, all_reduce_sum


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many samples have their label among the top-k logits, for each k (k capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(target[:, None])
    return [int(hit[:, :min(k, kmax)].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate_classifier(forward, loader, dist: DistInfo, autocast=nullcontext) -> dict:
    """`forward(batch) -> (logits, target)` over `loader` (this rank's shard); returns top1, top5 (percent),
    loss (mean cross-entropy) and n, reduced over all processes."""
    sums = torch.zeros(4, dtype=torch.float64)  # correct@1, correct@5, loss sum, n
    for batch in loader:
        with autocast():
            logits, target = forward(batch)
        if target.numel() == 0:
            continue
        logits = logits.float()
        c1, c5 = topk_correct(logits, target)
        sums += torch.tensor([c1, c5, float(F.cross_entropy(logits, target, reduction="sum")), target.numel()],
                             dtype=torch.float64)
    sums = all_reduce_sum(sums, dist)
    n = max(1.0, sums[3].item())
    return {"top1": 100.0 * sums[0].item() / n, "top5": 100.0 * sums[1].item() / n, "loss": sums[2].item() / n,
            "n": int(sums[3].item())}
