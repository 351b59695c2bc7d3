"""The engine's contract with runners: the schedule is the task's, hooks run at their points and keep their state
over a resume, a resumed finished run evaluates once more without training, logging or saving."""
import json

import pytest
import torch
import torch.nn as nn

from mae_core.checkpoint import read_checkpoint, save_checkpoint
from mae_core.distributed import DistInfo
from mae_core.engine import Engine, Hook, epoch_cosine_schedule
from mae_core.errors import MaeBenchError
from mae_core.hooks import BestCheckpoint, Counter, PeriodicEval
from mae_core.runner import read_trained


class Recorder(Hook):
    def __init__(self):
        self.updates, self.epochs = 0, []

    def after_update(self, engine):
        self.updates += 1

    def after_epoch(self, engine, epoch, stats):
        self.epochs.append(epoch)


def _engine(run_dir, model, hooks, total=6, per_epoch=2, accum=1):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Engine(model, opt, scheduler=epoch_cosine_schedule(opt, total // per_epoch, per_epoch, 1),
                  run_dir=run_dir, dist=DistInfo(), total_updates=total, updates_per_epoch=per_epoch,
                  accum_iter=accum, log_every=1, hooks=hooks)


def _fit(engine, per_epoch=2, accum=1):
    batches = [torch.randn(4, 3) for _ in range(per_epoch * accum)]
    return engine.fit(lambda epoch: batches, lambda net, x: (net(x).pow(2).mean(), len(x)))


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_hooks_run_after_every_update_and_epoch_and_add_to_the_logged_stats(tmp_path):
    torch.manual_seed(0)
    rec, count = Recorder(), Counter("seen")
    scores = iter([3.0, 1.0, 2.0])
    hooks = [rec, PeriodicEval(lambda epoch, last: {"score": next(scores), "last": last}, every=2), count,
             BestCheckpoint("score", tmp_path / "checkpoint-best.pth", nn.Linear(3, 1))]
    engine = _engine(tmp_path, nn.Linear(3, 1), hooks, accum=2)
    count.add(5)
    stats = _fit(engine, accum=2)
    assert rec.updates == 6 and rec.epochs == [0, 1, 2]  # one update per two batches
    assert stats["score"] == 1.0 and stats["last"] is True and stats["score_best"] == 3.0  # epochs 1 and 2 evaluate
    epochs = [r for r in _records(tmp_path) if r["type"] == "epoch"]
    assert ["score" in r for r in epochs] == [False, True, True]
    ckpt = read_checkpoint(tmp_path / "checkpoint-last.pth")
    assert ckpt["extra_state"] == {"seen": 5, "best_score": 3.0, "best_epoch": 1}
    assert read_checkpoint(tmp_path / "checkpoint-best.pth")["epoch"] == 1


def test_a_resumed_finished_run_evaluates_once_more_and_writes_nothing(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    _fit(_engine(tmp_path, model, [PeriodicEval(lambda e, last: {"score": 1.0}, 1)]))
    log, ckpt = (tmp_path / "log.jsonl").read_text(), (tmp_path / "checkpoint-last.pth").read_bytes()
    rec, count = Recorder(), Counter("seen")
    engine = _engine(tmp_path, nn.Linear(3, 1), [rec, count, PeriodicEval(lambda e, last: {"score": 2.0, "e": e}, 1)])
    assert engine.resume("auto") == 3
    stats = _fit(engine)
    assert stats == {"score": 2.0, "e": 2} and rec.updates == 0 and rec.epochs == [2]
    assert torch.equal(engine.module.weight, model.weight)  # the resumed weights
    assert (tmp_path / "checkpoint-last.pth").read_bytes() == ckpt
    after = (tmp_path / "log.jsonl").read_text()
    assert after.startswith(log) and [r["type"] for r in _records(tmp_path)][len(log.splitlines()):] == ["resume"]


def test_hook_state_and_unowned_extra_state_survive_a_resume(tmp_path):
    torch.manual_seed(0)
    count = Counter("seen")
    engine = _engine(tmp_path, nn.Linear(3, 1), [count], total=4)
    count.add(7)
    _fit(engine)  # 2 epochs
    ckpt = read_checkpoint(tmp_path / "checkpoint-last.pth")
    save_checkpoint(tmp_path / "checkpoint-last.pth", ckpt["model"], optimizer=ckpt["optimizer"], epoch=0,
                    extra={"extra_state": {**ckpt["extra_state"], "other": 1}})
    again = Counter("seen")
    engine = _engine(tmp_path, nn.Linear(3, 1), [again], total=4)
    assert engine.resume("auto") == 1 and again.value == 7
    again.add(1)
    _fit(engine)
    assert read_checkpoint(tmp_path / "checkpoint-last.pth")["extra_state"] == {"seen": 8, "other": 1}


def test_no_schedule_keeps_the_optimiser_lr_and_bad_lengths_are_refused(tmp_path):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.25)
    engine = Engine(model, opt, scheduler=None, run_dir=tmp_path, dist=DistInfo(), total_updates=2, updates_per_epoch=1)
    assert _fit(engine, per_epoch=1)["lr"] == 0.25
    with pytest.raises(MaeBenchError, match="do not split into epochs"):
        Engine(model, opt, scheduler=None, run_dir=tmp_path, dist=DistInfo(), total_updates=5, updates_per_epoch=2)


def test_resume_and_eval_only_weights_that_do_not_fit_are_one_line(tmp_path):
    save_checkpoint(tmp_path / "checkpoint-last.pth", {"weight": torch.zeros(1, 3)}, epoch=0, config={"task": "t"})
    engine = _engine(tmp_path / "run", nn.Linear(3, 1), [])
    with pytest.raises(MaeBenchError, match=r"does not fit the model this run trains \(missing: bias\)"):
        engine.resume(str(tmp_path / "checkpoint-last.pth"))
    assert read_trained(str(tmp_path / "checkpoint-last.pth"), "t")["model"]["weight"].shape == (1, 3)
    with pytest.raises(MaeBenchError, match="is a t model; --eval-only --task u needs the model_final.pth of a u run"):
        read_trained(str(tmp_path / "checkpoint-last.pth"), "u")
