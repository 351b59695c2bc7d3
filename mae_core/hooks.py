"""The engine hooks the runners share (detectron2's hooks are the model): periodic evaluation, the best
checkpoint, an exponential moving average of the weights."""
from collections.abc import Callable
from pathlib import Path

import torch

from .checkpoint import save_checkpoint
from .engine import Engine, Hook


class PeriodicEval(Hook):
    """`evaluate(epoch, last) -> metrics` after every `every`-th epoch and the last; the metrics join the
    epoch's stats (and so the log)."""

    def __init__(self, evaluate: Callable[[int, bool], dict], every: int):
        self.evaluate, self.every = evaluate, every

    def after_epoch(self, engine: Engine, epoch: int, stats: dict) -> None:
        last = engine.is_last(epoch)
        if last or (epoch + 1) % self.every == 0:
            stats.update(self.evaluate(epoch, last))


class BestCheckpoint(Hook):
    """Keeps `best_<metric>` and `best_epoch` (in the checkpoint's extra_state), writes `path` with `module`'s
    weights when an evaluation beats the best so far, and adds `<metric>_best` to the epoch's stats."""

    def __init__(self, metric: str, path: Path, module: torch.nn.Module):
        self.metric, self.path, self.module = metric, Path(path), module
        self.best: float | None = None
        self.best_epoch: int | None = None

    def after_epoch(self, engine: Engine, epoch: int, stats: dict) -> None:
        if self.metric not in stats:
            return
        if stats[self.metric] > (-1.0 if self.best is None else self.best):
            self.best, self.best_epoch = stats[self.metric], epoch
            if engine.dist.is_main:
                save_checkpoint(self.path, self.module.state_dict(), epoch=epoch, config=engine.config)
        stats[f"{self.metric}_best"] = self.best

    def state_dict(self) -> dict:
        if self.best is None:
            return {}
        return {f"best_{self.metric}": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        if f"best_{self.metric}" in state:
            self.best, self.best_epoch = state[f"best_{self.metric}"], state.get("best_epoch")


class EMA(Hook):
    """Updates `ema` (timm's ModelEmaV3) from `model` after every optimiser update. With EMA the averaged model
    is the result (paper A.2): the engine's checkpoints hold it as "model", and the trained weights as
    extra_state "model_raw", from which a resumed run continues training."""

    def __init__(self, ema, model: torch.nn.Module):
        self.ema, self.model = ema, model

    def after_update(self, engine: Engine) -> None:
        self.ema.update(self.model)

    def state_dict(self) -> dict:
        return {"model_raw": dict(self.model.state_dict())}

    def load_state_dict(self, state: dict) -> None:
        if "model_raw" in state:
            self.model.load_state_dict(state["model_raw"])


class Counter(Hook):
    """A count that survives a resume (extra_state `key`) and, once above 0, joins every epoch's stats as `key`:
    the one rule for the training samples skipped as unreadable ("skipped_samples") in every task."""

    def __init__(self, key: str):
        self.key, self.value = key, 0

    def add(self, n: int) -> None:
        self.value += n

    def after_epoch(self, engine: Engine, epoch: int, stats: dict) -> None:
        if self.value:
            stats[self.key] = self.value

    def state_dict(self) -> dict:
        return {self.key: self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state.get(self.key, 0)
