"""Paired statistics of two runs (or two seed groups) scored on the same evaluation images: percentile
bootstrap intervals of a metric's difference, resampling images (and seeds), and McNemar's exact test for top-1.

Each run's per-image evidence (results.evidence) becomes a scorer: `full()` is the run's own metric, bit for bit,
and `resampled(idx)` the metric on each row of `idx` ([b, n] image positions drawn with replacement), computed on
the multiset of images the row names (an image drawn twice counts twice). `paired_bootstrap` draws one image
resample per replicate and scores both sides on it: the pairing is what cancels the images' difficulty
(Efron & Tibshirani 1993, An Introduction to the Bootstrap, ch. 13; Koehn 2004, Statistical Significance Tests
for Machine Translation Evaluation). For seed groups each replicate first resamples each side's seeds, then the
images (README: Statistics). numpy / scipy / pycocotools, no torch.
"""
import contextlib
import copy
import io
import warnings

import numpy as np
from scipy.stats import binomtest

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


def weights(idx: np.ndarray, n: int) -> np.ndarray:
    """[b, n] multiplicities of each image in each resample row of `idx`."""
    flat = (np.arange(len(idx))[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=len(idx) * n).reshape(len(idx), n).astype(np.float64)


class TopK:
    """Top-1 (k=1) or top-5 accuracy in percent from per-image predictions (labels [n], top-5 ids [n, 5])."""

    def __init__(self, ids, labels, top5, k: int = 1):
        self.ids = list(ids)
        self.correct = (np.asarray(top5)[:, :k] == np.asarray(labels)[:, None]).any(1)

    def full(self) -> float:
        # the same float64 arithmetic as evaluate_classifier and knn_accuracy: 100 * hits / n
        return 100.0 * float(self.correct.sum()) / len(self.correct)

    def resampled(self, idx: np.ndarray) -> np.ndarray:
        return 100.0 * self.correct[idx].sum(1) / idx.shape[1]


def seg_scores(totals: np.ndarray) -> dict:
    """mIoU / mAcc / aAcc (percent) from summed (intersect, pred, label) areas [..., K, 3] (transfer.segmentation
    .metrics: classes with union 0 left out of the mean IoU, classes without label pixels out of mAcc)."""
    tp, pred, gt = totals[..., 0], totals[..., 1], totals[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, acc = tp / (gt + pred - tp), tp / gt
        return {"mIoU": 100.0 * np.nanmean(iou, -1), "mAcc": 100.0 * np.nanmean(acc, -1),
                "aAcc": 100.0 * tp.sum(-1) / gt.sum(-1)}


class SegMetric:
    """mIoU, mAcc or aAcc of per-image areas `counts` [n, K, 3] (intersect, pred, label per class)."""

    def __init__(self, ids, counts, metric: str = "mIoU"):
        self.ids, self.metric = list(ids), metric
        self.counts = np.asarray(counts, dtype=np.float64)

    def full(self) -> float:
        return float(seg_scores(self.counts.sum(0))[self.metric])

    def resampled(self, idx: np.ndarray) -> np.ndarray:
        n, k = self.counts.shape[:2]
        totals = (weights(idx, n) @ self.counts.reshape(n, k * 3)).reshape(len(idx), k, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row without any class present: NaN
            return seg_scores(totals)[self.metric]


class CocoAP:
    """COCO AP (percent, IoU .50:.95, all areas, 100 detections: COCOeval's stats[0]) of `detections`
    (detectron2's results) on `img_ids`.

    COCOeval matches detections to ground truth per (image, category) (`evaluateImg`); only `accumulate`
    pools images. So the images are evaluated once, and a resample re-runs `accumulate` on the per-image
    records listed in resample order. Giving a resample to COCOeval as `params.imgIds` would be wrong:
    `evaluate` takes np.unique of the ids, so an image drawn twice would count once. Here each resample
    position gets its own id (0..n-1, in `params.imgIds` and in the evaluated parameters), so an image drawn
    twice is two images, as if its ground truth and detections were copied under a fresh id. A resample
    accumulates only the area range and detection limit AP needs ("all", 100), a twelfth of the work."""

    def __init__(self, coco_gt, detections: list[dict], img_ids, iou_type: str = "bbox"):
        from pycocotools.cocoeval import COCOeval
        self.img_ids = sorted(int(i) for i in img_ids)
        self.ids = [str(i) for i in self.img_ids]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            dets = coco_gt.loadRes([dict(d) for d in detections]) if detections else None
            self.ev = COCOeval(coco_gt, dets, iou_type)
            self.ev.params.imgIds = self.img_ids
            if dets is not None:
                self.ev.evaluate()
        self.empty = dets is None

    def _score(self, positions) -> float:
        if self.empty:
            return 0.0  # nothing detected: COCOeval's AP is 0 wherever ground truth exists (coco_eval)
        ev, n = self.ev, len(self.img_ids)
        pe = ev._paramsEval
        k, a = len(pe.catIds) if pe.useCats else 1, len(pe.areaRng)
        area = pe.areaRngLbl.index("all")
        rep = copy.copy(ev)
        rep.evalImgs = [ev.evalImgs[(kk * a + area) * n + i] for kk in range(k) for i in positions]
        rep.params, rep._paramsEval = copy.copy(ev.params), copy.copy(pe)
        for p in (rep.params, rep._paramsEval):
            p.imgIds = list(range(len(positions)))  # one id per resample position (see the class docstring)
            p.areaRng, p.areaRngLbl, p.maxDets = [pe.areaRng[area]], ["all"], [pe.maxDets[-1]]
        with contextlib.redirect_stdout(io.StringIO()):
            rep.accumulate()
        s = rep.eval["precision"][:, :, :, 0, 0]  # COCOeval.summarize's stats[0]: the mean over defined entries
        return 100.0 * float(np.mean(s[s > -1])) if (s > -1).any() else -100.0

    def full(self) -> float:
        return self._score(range(len(self.img_ids)))

    def resampled(self, idx: np.ndarray) -> np.ndarray:
        return np.array([self._score(row) for row in idx])


def mcnemar(a_correct, b_correct) -> dict:
    """McNemar's exact test on paired per-image correctness: under "A and B are equally accurate" each
    discordant image (one right, the other wrong) is A's with probability 1/2; p = two-sided exact binomial."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = binomtest(only_a, n, 0.5).pvalue if n else 1.0
    return {"only_a": only_a, "only_b": only_b, "p": float(p)}


def _chunks(total: int, n: int):
    step = max(1, 2 ** 22 // max(n, 1))  # about 32 MB of indices at a time
    for start in range(0, total, step):
        yield min(step, total - start)


def paired_bootstrap(side_a: list, side_b: list, resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> dict:
    """Percentile bootstrap interval of mean(A) - mean(B), each side a list of scorers (one per seed) over the
    same images in the same order. A replicate draws each side's seeds with replacement (when a side has more
    than one), then the images with replacement (one draw for both sides: paired), and scores every drawn seed
    on the drawn images. Returns the point values (means of the runs' own metrics), the difference, its
    interval and the replicates' standard deviation."""
    ids = side_a[0].ids
    if any(s.ids != ids for s in (*side_a, *side_b)):
        raise ValueError("every run must score the same images in the same order")
    n, rng = len(ids), np.random.default_rng(seed)
    seeds_a = rng.integers(0, len(side_a), (resamples, len(side_a)))
    seeds_b = rng.integers(0, len(side_b), (resamples, len(side_b)))
    scores_a, scores_b = [], []
    for b in _chunks(resamples, n):
        idx = rng.integers(0, n, (b, n))
        scores_a.append(np.stack([s.resampled(idx) for s in side_a]))  # [runs, b]
        scores_b.append(np.stack([s.resampled(idx) for s in side_b]))
    scores_a, scores_b = np.concatenate(scores_a, 1), np.concatenate(scores_b, 1)
    reps = np.arange(resamples)[:, None]
    diffs = scores_a[seeds_a, reps].mean(1) - scores_b[seeds_b, reps].mean(1)
    lo, hi = np.percentile(diffs, [50 * (1 - level), 50 * (1 + level)])
    a, b = float(np.mean([s.full() for s in side_a])), float(np.mean([s.full() for s in side_b]))
    return {"a": a, "b": b, "diff": a - b, "low": float(lo), "high": float(hi), "level": level,
            "resamples": resamples, "seed": seed, "images": n, "runs_a": len(side_a), "runs_b": len(side_b),
            "boot_std": float(diffs.std(ddof=1)) if resamples > 1 else float("nan"), "replicates": diffs}
