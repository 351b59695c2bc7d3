"""mIoU / mAcc / aAcc from one confusion matrix over the whole evaluation set (mmsegmentation's IoUMetric).

IoU_c = TP_c / (pred_c + gt_c - TP_c) and Acc_c = TP_c / gt_c, counted over pixels whose label is
not the ignore index. A class with union 0 (absent from both prediction and ground truth) has IoU NaN,
a class with no ground-truth pixel has Acc NaN; both are left out of the mean (numpy.nanmean), as in
mmsegmentation. aAcc = sum TP / sum gt.
"""
import numpy as np
import torch

from mae_core.distributed import DistInfo, all_reduce_sum

IGNORE_INDEX = 255


class ConfusionMatrix:
    """Accumulates a K x K matrix (rows: ground truth, columns: prediction) over label maps."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: integer maps of the same shape; target pixels == ignore_index are skipped."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} differ in size")
        k = self.num_classes
        valid = target != self.ignore_index
        t, p = target[valid].long().cpu(), pred[valid].long().cpu()
        if t.numel() and (t.min() < 0 or t.max() >= k):
            raise ValueError(f"label ids must be in 0..{k - 1} or {self.ignore_index}, got {int(t.min())}..{int(t.max())}")
        self.mat += torch.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def reduce(self, dist: DistInfo) -> "ConfusionMatrix":
        self.mat = all_reduce_sum(self.mat, dist)
        return self

    def compute(self) -> dict:
        return scores(self.mat.numpy())


def scores(mat: np.ndarray) -> dict:
    """{"mIoU", "mAcc", "aAcc"} in percent and per-class "IoU"/"Acc" lists (NaN where undefined)."""
    mat = mat.astype(np.float64)
    tp = np.diag(mat)
    gt, pred = mat.sum(1), mat.sum(0)
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / union  # 0/0 -> NaN for classes in neither prediction nor ground truth
        acc = tp / gt
    total = gt.sum()
    return {"mIoU": 100.0 * _nanmean(iou), "mAcc": 100.0 * _nanmean(acc),
            "aAcc": float(100.0 * tp.sum() / total) if total else float("nan"),
            "IoU": (100.0 * iou).tolist(), "Acc": (100.0 * acc).tolist()}


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
