"""Evaluation over a whole split in fp32 (as mmseg's reported numbers): one confusion matrix (summed over
processes), optional label-map PNGs."""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from mae_core.atomic import atomic_write
from mae_core.distributed import DistInfo, gather_rows
from mae_core.threads import worker_init

from .metrics import IGNORE_INDEX, ConfusionMatrix


def _single(batch):
    return batch[0]  # one image at a time: sizes differ (mmseg evaluates with batch 1 too)


@torch.no_grad()
def evaluate_segmenter(model, dataset, dist: DistInfo, test: dict, num_classes: int, preds_dir: Path | None = None,
             num_workers: int = 0, keep: bool = False) -> dict:
    """mIoU / mAcc / aAcc (percent) of `model` on `dataset` (evaluation items); logits are resized to
    each label map's size before the argmax. With `preds_dir`, writes <name>.png with ids 1..K. With `keep`,
    "image_counts" holds every image's per-class areas, gathered from all processes: rows (dataset index, class,
    intersect, pred, label), as mmsegmentation's intersect_and_union counts them (results.evidence)."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    kept = []
    shard = list(range(dist.rank, len(dataset), dist.world_size))
    loader = DataLoader(torch.utils.data.Subset(dataset, shard), batch_size=1, num_workers=num_workers,
                        collate_fn=_single, worker_init_fn=worker_init)  # one torch thread per worker
    # disable=None: no bar when stderr is no terminal (log files)
    for index, (x, y, name) in zip(shard, tqdm(loader, desc="eval", leave=False,
                                               disable=None if dist.is_main else True, dynamic_ncols=True)):
        logits = model.predict_logits(x[None].to(dist.device), test["mode"], test["crop_size"], test["stride"])
        logits = F.interpolate(logits.float(), size=y.shape, mode="bilinear", align_corners=False)
        pred = logits.argmax(1)[0].cpu()
        cm.update(pred, y)
        if keep:
            kept.append(image_areas(index, pred, y, num_classes))
        if preds_dir is not None:
            png = Image.fromarray((pred.numpy() + 1).astype(np.uint8))  # ADE20K ids: 1..K, 0 never predicted
            atomic_write(Path(preds_dir) / f"{name}.png", lambda tmp: png.save(tmp, format="PNG"))
    cm.reduce(dist)
    res = cm.compute()
    if keep:
        mine = torch.cat(kept) if kept else torch.zeros((0, 5), dtype=torch.int64)
        res["image_counts"] = gather_rows(mine.to(dist.device), dist).cpu()
    return res


def image_areas(index: int, pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """One image's rows (index, class, intersect, pred, label) over the classes in its label or prediction:
    the diagonal, column and row sums of its confusion matrix (ignored pixels left out, as ConfusionMatrix)."""
    valid = target != ignore_index
    t, p = target[valid].long().cpu(), pred[valid].long().cpu()
    areas = torch.stack([torch.bincount(t[t == p], minlength=num_classes), torch.bincount(p, minlength=num_classes),
                         torch.bincount(t, minlength=num_classes)], 1)[:num_classes]
    present = (areas[:, 1:] > 0).any(1).nonzero()[:, 0]
    return torch.cat([torch.full((len(present), 1), index), present.view(-1, 1), areas[present]], 1)
