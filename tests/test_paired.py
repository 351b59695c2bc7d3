"""results.paired against exact computations: McNemar vs an exact binomial sum, the bootstrap vs its closed-form
moments and vs full enumeration of every resample on tiny sets, COCO AP re-scoring vs COCOeval on copied images."""
import contextlib
import io
import itertools
from math import comb

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from results.paired import CocoAP, SegMetric, TopK, mcnemar, paired_bootstrap, seg_scores


def exact_mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar: twice the smaller binomial(b + c, 1/2) tail, at most 1."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("only_a,only_b,both,neither", [(0, 0, 5, 3), (1, 0, 2, 2), (7, 2, 10, 1), (3, 3, 0, 0),
                                                         (15, 4, 30, 8), (0, 9, 1, 1)])
def test_mcnemar_is_the_exact_binomial(only_a, only_b, both, neither):
    a = [1] * only_a + [0] * only_b + [1] * both + [0] * neither
    b = [0] * only_a + [1] * only_b + [1] * both + [0] * neither
    got = mcnemar(a, b)
    assert (got["only_a"], got["only_b"]) == (only_a, only_b)
    assert got["p"] == pytest.approx(exact_mcnemar_p(only_a, only_b), rel=1e-12)


def topk(ids, labels, correct):
    """A TopK scorer whose top-1 is right exactly where `correct` says."""
    labels = np.asarray(labels)
    top5 = np.stack([np.where(correct, labels, labels + 1)] + [labels + 2 + j for j in range(4)], 1)
    return TopK(ids, labels, top5)


def test_top1_bootstrap_matches_the_closed_form_moments():
    rng = np.random.default_rng(3)
    n = 12
    a_ok, b_ok = rng.random(n) < 0.7, rng.random(n) < 0.5
    ids, labels = [f"im{i}" for i in range(n)], rng.integers(0, 10, n)
    res = paired_bootstrap([topk(ids, labels, a_ok)], [topk(ids, labels, b_ok)], resamples=40000, seed=1)
    d = 100.0 * (a_ok.astype(float) - b_ok.astype(float))
    assert res["diff"] == pytest.approx(d.mean(), abs=1e-12)
    # the bootstrap distribution of a mean of n iid draws from the empirical distribution: mean d-bar,
    # variance (n - 1) / n * s^2 / n
    var = (n - 1) / n * d.var(ddof=1) / n
    reps = res["replicates"]
    assert reps.mean() == pytest.approx(d.mean(), abs=4 * np.sqrt(var / len(reps)))
    assert reps.var(ddof=1) == pytest.approx(var, rel=0.04)


def enumerate_exact(values_of_resample, n: int) -> dict:
    """The exact bootstrap distribution: every one of the n^n index tuples, each with probability n^-n."""
    dist = {}
    for idx in itertools.product(range(n), repeat=n):
        v = round(float(values_of_resample(np.array(idx))), 9)
        dist[v] = dist.get(v, 0.0) + n ** -n
    return dist


def seg_counts(rng, n, k):
    label = rng.integers(0, 30, (n, k)) * (rng.random((n, k)) < 0.7)
    pred = rng.integers(0, 30, (n, k)) * (rng.random((n, k)) < 0.7)
    inter = np.minimum(label, pred) * (rng.random((n, k)) < 0.8)
    return np.stack([inter, pred, label], -1)


@pytest.mark.parametrize("n", [3, 4])
def test_miou_bootstrap_matches_full_enumeration(n):
    rng = np.random.default_rng(n)
    ca, cb = seg_counts(rng, n, 4), seg_counts(rng, n, 4)
    ids = [str(i) for i in range(n)]
    a, b = SegMetric(ids, ca), SegMetric(ids, cb)
    # a resample's mIoU is that of the copied images' summed areas
    idx = np.array([[0] * n, list(range(n))[::-1]])
    direct = [seg_scores(ca[row].sum(0).astype(float))["mIoU"] for row in idx]
    np.testing.assert_allclose(a.resampled(idx), direct, rtol=1e-12)
    exact = enumerate_exact(lambda i: seg_scores(ca[i].sum(0).astype(float))["mIoU"]
                            - seg_scores(cb[i].sum(0).astype(float))["mIoU"], n)
    reps = np.round(paired_bootstrap([a], [b], resamples=20000, seed=2)["replicates"], 9)
    values = np.array(sorted(exact))
    exact_cdf = np.cumsum([exact[v] for v in values])
    mc_cdf = np.searchsorted(np.sort(reps), values, side="right") / len(reps)
    assert np.abs(mc_cdf - exact_cdf).max() < 0.015  # Monte Carlo error of a CDF at 20000 draws: <= 0.0035 sd


def test_seed_groups_resample_seeds_then_images_as_enumerated():
    """Two seeds per side on n = 3 images: the exact distribution over all 2^2 x 2^2 seed draws and 3^3 image
    draws, against the replicates' mean and variance."""
    rng = np.random.default_rng(7)
    n, ids = 3, ["x", "y", "z"]
    labels = np.zeros(n, dtype=int)
    oks_a, oks_b = rng.random((2, n)) < 0.6, rng.random((2, n)) < 0.4
    side_a = [topk(ids, labels, ok) for ok in oks_a]
    side_b = [topk(ids, labels, ok) for ok in oks_b]
    vals, probs = [], []
    for sa in itertools.product(range(2), repeat=2):
        for sb in itertools.product(range(2), repeat=2):
            for idx in itertools.product(range(n), repeat=n):
                idx = list(idx)
                va = np.mean([100.0 * oks_a[s][idx].mean() for s in sa])
                vb = np.mean([100.0 * oks_b[s][idx].mean() for s in sb])
                vals.append(va - vb)
                probs.append(1 / (4 * 4 * n ** n))
    vals, probs = np.array(vals), np.array(probs)
    mean = (vals * probs).sum()
    var = ((vals - mean) ** 2 * probs).sum()
    reps = paired_bootstrap(side_a, side_b, resamples=40000, seed=5)["replicates"]
    assert reps.mean() == pytest.approx(mean, abs=4 * np.sqrt(var / len(reps)))
    assert reps.var() == pytest.approx(var, rel=0.04)


def test_bootstrap_is_reproducible_and_refuses_other_images():
    ids, labels = ["a", "b", "c", "d"], np.arange(4)
    a, b = topk(ids, labels, [1, 1, 0, 1]), topk(ids, labels, [0, 1, 0, 0])
    r1, r2 = paired_bootstrap([a], [b], resamples=200, seed=9), paired_bootstrap([a], [b], resamples=200, seed=9)
    assert (r1["low"], r1["high"]) == (r2["low"], r2["high"])
    assert r1["low"] <= r1["diff"] <= r1["high"]
    with pytest.raises(ValueError):
        paired_bootstrap([a], [topk(["a", "b", "c", "e"], labels, [1, 1, 1, 1])])


# ---- COCO --------------------------------------------------------------------------------------------------
def coco_gt(images: list[dict], anns: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def tiny_coco(rng):
    images, anns, dets = [], [], []
    for img in range(1, 5):
        images.append({"id": img, "width": 100, "height": 100, "file_name": f"{img}.jpg"})
        for _ in range(rng.integers(1, 4)):
            x, y, w, h = (float(v) for v in rng.integers(0, 50, 4) + [0, 0, 10, 10])
            cat = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            if rng.random() < 0.8:  # a near hit, sometimes of the wrong class
                jit = rng.normal(0, 3, 4)
                dets.append({"image_id": img, "category_id": cat if rng.random() < 0.8 else 3 - cat,
                             "bbox": [x + jit[0], y + jit[1], w + abs(jit[2]), h + abs(jit[3])],
                             "score": float(rng.random())})
        dets.append({"image_id": img, "category_id": 1, "bbox": [60.0, 60.0, 20.0, 20.0], "score": 0.3})  # a miss
    return images, anns, dets


def cocoeval_ap(gt: COCO, dets: list[dict], img_ids) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes([dict(d) for d in dets]), "bbox")
        ev.params.imgIds = list(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100.0 * float(ev.stats[0])


def copied(images, anns, dets, idx):
    """The resample as a data set of its own: image idx[j] copied under the fresh id j + 1, its ground truth and
    detections with it."""
    new_images, new_anns, new_dets = [], [], []
    for j, i in enumerate(idx):
        src = images[i]["id"]
        new_images.append({**images[i], "id": j + 1})
        new_anns += [{**a, "image_id": j + 1, "id": len(new_anns) + k + 1}
                     for k, a in enumerate(x for x in anns if x["image_id"] == src)]
        new_dets += [{**d, "image_id": j + 1} for d in dets if d["image_id"] == src]
    return coco_gt(new_images, new_anns), new_dets


def test_coco_ap_resample_equals_cocoeval_on_copied_images():
    rng = np.random.default_rng(0)
    images, anns, dets = tiny_coco(rng)
    gt = coco_gt(images, anns)
    scorer = CocoAP(gt, dets, [im["id"] for im in images])
    assert scorer.full() == cocoeval_ap(gt, dets, [im["id"] for im in images])  # bit for bit
    for idx in ([0, 0, 0, 3], [3, 1, 1, 2], [2, 2, 3, 3], [0, 1, 2, 3]):
        gt2, dets2 = copied(images, anns, dets, idx)
        want = cocoeval_ap(gt2, dets2, range(1, len(idx) + 1))
        assert scorer.resampled(np.array([idx]))[0] == pytest.approx(want, abs=1e-9)
    # what the class docstring warns of: duplicated ids given to COCOeval collapse into one image
    collapsed = cocoeval_ap(gt, dets, [1, 1, 1, 4])
    assert collapsed == pytest.approx(cocoeval_ap(gt, dets, [1, 4]))
