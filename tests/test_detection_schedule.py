"""coco_det's lr: ViTDet's warm-up and x0.1 steps, in iterations, as detectron2 computes them."""
import bisect

import pytest
import torch

from benchmarks.config import load_recipe
from mae_core.errors import MaeBenchError
from transfer.detection.train import make_scheduler, milestones


def vitdet_lr(it: int, base: float, max_iter: int, steps=(163889, 177546), warmup=250, factor=0.001) -> float:
    """detectron2's WarmupParamScheduler(MultiStepParamScheduler([1, 0.1, 0.01], milestones), warmup_length=
    warmup / max_iter, warmup_factor) at iteration `it`: linear from base x factor to base over the warm-up."""
    if it < warmup:
        alpha = it / warmup
        return base * (factor * (1 - alpha) + alpha)
    return base * 0.1 ** bisect.bisect_right(list(steps), it)


def lrs(s: dict, total: int, base: float, iters) -> list[float]:
    group = {"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": 0.5}
    opt = torch.optim.SGD([group], lr=base)
    sched = make_scheduler(opt, total, lr=base, warmup_iters=s["warmup_iters"], warmup_factor=s["warmup_factor"],
                           lr_schedule="step", milestones=milestones(s, total))
    out = []
    for it in iters:
        sched.step_update(it)
        out.append(opt.param_groups[0]["lr"] / 0.5)  # lr_scale (layer decay) is honoured
    return out


@pytest.mark.parametrize("recipe,max_iter,steps", [("paper", 184375, (163889, 177546)),
                                                   ("paper_huge", 138281, (122916, 133159))])
def test_paper_scale_lr_is_vitdets_at_every_iteration(recipe, max_iter, steps):
    s = load_recipe("coco_det", recipe, {}).to_dict()["schedule"]
    assert (s["max_iter"], tuple(s["milestones"])) == (max_iter, steps)
    assert milestones(s, max_iter) == list(steps)  # 88.9% and 96.3% of max_iter (ViT-B/L), exactly
    iters = list(range(max_iter))
    ours = lrs(s, max_iter, 1e-4, iters)
    want = [vitdet_lr(it, 1e-4, max_iter, steps) for it in iters]
    assert ours == pytest.approx(want, rel=1e-12, abs=0)  # the steps from update m on, as detectron2


@pytest.mark.parametrize("total", [6, 7, 100, 400, 936, 137400, 183200])
def test_milestones_fall_where_the_fractions_of_training_put_them(total):
    """A run of another length (a subset, the smoke recipe) steps at the same fraction of its own updates as the
    former rule, `int(m / max_iter * total)`, did."""
    for recipe in ("paper", "paper_huge", "smoke", "subset"):
        s = load_recipe("coco_det", recipe, {}).to_dict()["schedule"]
        assert milestones(s, total) == [int(m / s["max_iter"] * total) for m in s["milestones"]]


def test_bad_milestones_are_one_error():
    with pytest.raises(MaeBenchError, match="schedule.milestones must be increasing iterations"):
        milestones({"max_iter": 100, "milestones": (90, 80)}, 100)
    with pytest.raises(MaeBenchError, match="schedule.milestones"):
        milestones({"max_iter": 100, "milestones": (100,)}, 100)
