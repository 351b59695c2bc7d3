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
from mae_core.distributed import DistInfo
from mae_core.threads import worker_init

from .metrics import ConfusionMatrix


def _single(batch):
    return batch[0]  # one image at a time: sizes differ (mmseg evaluates with batch 1 too)


@torch.no_grad()
def evaluate_segmenter(model, dataset, dist: DistInfo, test: dict, num_classes: int, preds_dir: Path | None = None,
             num_workers: int = 0) -> dict:
    """mIoU / mAcc / aAcc (percent) of `model` on `dataset` (evaluation items); logits are resized to
    each label map's size before the argmax. With `preds_dir`, writes <name>.png with ids 1..K."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    shard = list(range(dist.rank, len(dataset), dist.world_size))
    loader = DataLoader(torch.utils.data.Subset(dataset, shard), batch_size=1, num_workers=num_workers,
                        collate_fn=_single, worker_init_fn=worker_init)  # one torch thread per worker
    # disable=None: no bar when stderr is no terminal (log files)
    for x, y, name in tqdm(loader, desc="eval", leave=False, disable=None if dist.is_main else True,
                           dynamic_ncols=True):
        logits = model.predict_logits(x[None].to(dist.device), test["mode"], test["crop_size"], test["stride"])
        logits = F.interpolate(logits.float(), size=y.shape, mode="bilinear", align_corners=False)
        pred = logits.argmax(1)[0].cpu()
        cm.update(pred, y)
        if preds_dir is not None:
            png = Image.fromarray((pred.numpy() + 1).astype(np.uint8))  # ADE20K ids: 1..K, 0 never predicted
            atomic_write(Path(preds_dir) / f"{name}.png", lambda tmp: png.save(tmp, format="PNG"))
    cm.reduce(dist)
    return cm.compute()
