"""Top-1 / top-5 over a whole evaluation set, summed across processes."""
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from mae_core.distributed import DistInfo, all_reduce_sum, gather_rows
from results.evidence import write_predictions

TOPK = 5  # the predictions kept per image (results.evidence)


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many samples have their label among the top-k logits, for each k (k capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(target[:, None])
    return [int(hit[:, :min(k, kmax)].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate_classifier(forward, loader, dist: DistInfo, autocast=nullcontext, keep: bool = False) -> dict:
    """`forward(batch) -> (logits, target)` over `loader` (this rank's shard); returns top1, top5 (percent),
    loss (mean cross-entropy) and n, reduced over all processes. With `keep`, `forward` returns
    (logits, target, index) and the result's "rows" holds every process's [index, label, top-5 class ids]
    (-1 past the class count) per scored image, gathered on every process."""
    sums = torch.zeros(4, dtype=torch.float64)  # correct@1, correct@5, loss sum, n
    rows = []
    for batch in loader:
        with autocast():
            logits, target, *index = forward(batch)
        if target.numel() == 0:
            continue
        logits = logits.float()
        c1, c5 = topk_correct(logits, target)
        sums += torch.tensor([c1, c5, float(F.cross_entropy(logits, target, reduction="sum")), target.numel()],
                             dtype=torch.float64)
        if keep:
            top = torch.full((len(target), TOPK), -1, dtype=torch.int64)
            top[:, :min(TOPK, logits.shape[1])] = logits.topk(min(TOPK, logits.shape[1]), dim=1).indices.cpu()
            rows.append(torch.cat([index[0].cpu().view(-1, 1), target.cpu().view(-1, 1), top], 1))
    sums = all_reduce_sum(sums, dist)
    n = max(1.0, sums[3].item())
    res = {"top1": 100.0 * sums[0].item() / n, "top5": 100.0 * sums[1].item() / n, "loss": sums[2].item() / n,
           "n": int(sums[3].item())}
    if keep:
        mine = torch.cat(rows) if rows else torch.zeros((0, 2 + TOPK), dtype=torch.int64)
        res["rows"] = gather_rows(mine.to(dist.device), dist).cpu()
    return res


def write_val_predictions(path: Path, val_set, rows: torch.Tensor) -> None:
    """results.evidence's predictions.csv from evaluate_classifier's rows; an image's id is its path relative to
    the split folder."""
    split_dir = val_set.root / val_set.split
    images = [Path(val_set.samples[i][0]).relative_to(split_dir).as_posix() for i in rows[:, 0].tolist()]
    write_predictions(path, images, rows[:, 1].numpy(), rows[:, 2:].numpy())
