"""mae_core.trainer: the default pretraining trainer trains what a hand-written loop in the official order trains
(main_pretrain.py / engine_pretrain.py), and a subclass that overrides one `build_*` method changes that piece alone."""
import json

import pytest
import torch
from timm.optim import param_groups_weight_decay

from benchmarks.config import load_recipe, resolved
from mae_core.checkpoint import read_checkpoint
from mae_core.data import PretrainImages, epoch_loader, pretrain_transform
from mae_core.engine import adamw, epoch_cosine_schedule, scaled_lr, seed_all
from mae_core.masking import NoiseSampler
from mae_core.pretrain import PretrainTrainer, build_mae, run_pretrain
from mae_core.runner import run

# 24 images, batch 8: 3 updates an epoch, one epoch of warm-up then cosine
SETS = ["model.arch=vit_tiny_patch16", "model.img_size=32", "model.decoder_depth=1", "model.decoder_embed_dim=64",
        "model.decoder_num_heads=4", "schedule.batch_size=8", "schedule.epochs=2", "schedule.warmup_epochs=1",
        "data.num_workers=0", "runtime.device=cpu", "runtime.cpu_linear=aten", "runtime.log_every=1",
        "runtime.amp=none"]


def _cfg() -> dict:
    return resolved(load_recipe("pretrain", "smoke", SETS))


def by_hand(cfg: dict, data, optimizer=None, schedule: bool = True) -> dict:
    """The official pretraining loop written out in the order the trainer promises: seed, the model, the data (its
    mask noise checked on one draw), AdamW over timm's weight-decay groups (or `optimizer(model, lr)`), the lr of
    every update, one update per batch; each epoch reseeded as the engine does. Returns the weights."""
    m, d, optim, s, seed = cfg["model"], cfg["data"], cfg["optim"], cfg["schedule"], cfg["runtime"]["seed"]
    seed_all(seed)
    model = build_mae(m)
    data = PretrainImages(data, pretrain_transform(d["augment"], m["img_size"], d["crop_scale"]),
                          NoiseSampler(m["mask_strategy"], model.grid, m["mask_ratio"]), subset=d["subset"], seed=seed,
                          strict=d["strict"])
    updates, lr = len(data) // s["batch_size"], scaled_lr(optim["blr"], s["batch_size"], optim["lr"])
    opt = (optimizer or (lambda model, lr: adamw(param_groups_weight_decay(model, optim["weight_decay"]), lr=lr,
                                                 betas=optim["betas"])))(model, lr)
    sched = epoch_cosine_schedule(opt, s["epochs"], updates, s["warmup_epochs"], optim["min_lr"]) if schedule else None
    opt.zero_grad(set_to_none=True)
    for epoch in range(s["epochs"]):
        seed_all(seed, epoch, 0)
        model.train()
        for it, (imgs, noise) in enumerate(epoch_loader(data, epoch, s["batch_size"], 0, 1, seed)):
            if sched is not None:
                sched.step_update(epoch * updates + it)
            loss, _, _ = model(imgs, mask_ratio=m["mask_ratio"], noise=noise)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return model.state_dict()


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _steps(out) -> list[dict]:
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("type") == "step"]


class Same(PretrainTrainer):
    """Overrides nothing."""


class SgdPretraining(PretrainTrainer):
    def build_optimizer(self):
        return torch.optim.SGD(self.param_groups(), lr=self.lr)


class ConstantLrPretraining(PretrainTrainer):
    def build_lr_scheduler(self):
        return None  # the engine keeps the optimiser's lr


@pytest.fixture(scope="module")
def default_run(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    run_pretrain(_cfg(), init="scratch", arch=None, data=str(synth_root / "imagenet" / "train"), out=str(out))
    return out


def test_the_default_trainer_trains_what_the_official_loop_trains(default_run, synth_root):
    data = synth_root / "imagenet" / "train"
    ours = read_checkpoint(default_run / "checkpoint-last.pth")["model"]
    assert _equal(ours, by_hand(_cfg(), data))
    # a subclass that overrides nothing, run through the runner, is the entry point
    out = default_run.parent / "subclass"
    cfg = _cfg()
    run(cfg, lambda dist: Same(cfg, dist, data, out).build())
    assert _equal(read_checkpoint(out / "checkpoint-last.pth")["model"], ours)


@pytest.mark.parametrize("trainer", [SgdPretraining, ConstantLrPretraining])
def test_one_overridden_build_method_changes_that_piece_alone(trainer, default_run, synth_root, tmp_path):
    data, cfg = synth_root / "imagenet" / "train", _cfg()
    run(cfg, lambda dist: trainer(cfg, dist, data, tmp_path).build())
    got = read_checkpoint(tmp_path / "checkpoint-last.pth")
    if trainer is SgdPretraining:
        want = by_hand(_cfg(), data, optimizer=lambda model, lr: torch.optim.SGD(
            param_groups_weight_decay(model, cfg["optim"]["weight_decay"]), lr=lr))
        assert all("momentum" in g and "betas" not in g for g in got["optimizer"]["param_groups"])
    else:
        want = by_hand(_cfg(), data, schedule=False)
    assert _equal(got["model"], want)
    default = read_checkpoint(default_run / "checkpoint-last.pth")["model"]
    assert not _equal(got["model"], default)
    ours, theirs = _steps(tmp_path), _steps(default_run)
    assert len(ours) == len(theirs) == 6 and ours[0]["loss"] == theirs[0]["loss"]  # the same model and data
    if trainer is SgdPretraining:  # the same schedule
        assert [r["lr"] for r in ours] == [r["lr"] for r in theirs]
    else:  # the base lr throughout, where the default warms up from 0
        assert {r["lr"] for r in ours} == {scaled_lr(cfg["optim"]["blr"], 8)} and theirs[0]["lr"] == 0.0
