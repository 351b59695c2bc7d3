"""The shared training engine: fused AdamW, per-update lr schedules, AMP, gradient
accumulation, DDP, atomic checkpoints with exact resume, JSONL logs and progress bars.

Pretraining and every downstream task drive the same `Engine.fit`; they supply a
`step_fn(model, batch) -> (loss, n_images)`, a loader factory per epoch, the lr scheduler (built by the
task, in optimiser updates) and hooks (evaluation, best checkpoint, EMA: `mae_core.hooks`).

Training is `total_updates` optimiser updates cut into epochs of `updates_per_epoch`: after each epoch the
hooks run, a log record is written and a checkpoint saved. An epoch is a pass over the data for the
epoch-based protocols, and `eval_interval` iterations for an iteration-based one (ADE20K), as mmengine's
`IterBasedTrainLoop` checkpoints and validates every `val_interval` iterations.
"""
import json
import logging
import math
import random
import re
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from timm.scheduler import CosineLRScheduler
from timm.utils import unwrap_model
from tqdm import tqdm

from .atomic import atomic_write, copy_atomic
from .checkpoint import load_strict, read_checkpoint, save_checkpoint
from .distributed import DistInfo, all_reduce_mean, barrier
from .errors import MaeBenchError


PLAIN_PROGRESS_S = 30.0


class TrainingDiverged(MaeBenchError):
    """The loss became NaN or infinite."""


def seed_all(*key: int) -> None:
    """Seed python, numpy and torch from a tuple such as (seed, epoch, rank)."""
    s = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def adamw(params, lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per step where torch supports it (float params on CPU or CUDA):
    the same update as the loop version, several times faster than the default on the CPU."""
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=fused or None)


def batch_plan(n_images: int, batch_size: int, accum_iter: int, dist: DistInfo) -> tuple[int, int]:
    """(optimiser updates per epoch, effective batch) for `batch_size` per process; an error if a
    dataset is too small for one update."""
    iters = n_images // dist.world_size // batch_size
    if iters < accum_iter:
        raise MaeBenchError(f"{n_images} images give no full step of batch {batch_size} x accum {accum_iter} "
                            f"x {dist.world_size} processes; lower schedule.batch_size")
    return iters // accum_iter, batch_size * accum_iter * dist.world_size


def scaled_lr(blr: float, effective_batch: int, lr: float | None = None) -> float:
    """lr = blr * effective_batch / 256 unless an absolute lr is given."""
    return lr if lr is not None else blr * effective_batch / 256


@contextmanager
def _quiet(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def cosine_schedule(optimizer, total_updates: int, warmup_updates: int, min_lr: float = 0.0) -> CosineLRScheduler:
    """Per-update linear warm-up from 0, then half-cycle cosine to min_lr (official MAE schedule).
    Honours a param group's `lr_scale` (layer decay)."""
    warmup_updates = min(warmup_updates, max(0, total_updates - 1))
    with _quiet("timm.scheduler.cosine_lr"):  # its "no effect" warning fires for any one-update cosine phase
        return CosineLRScheduler(optimizer, t_initial=max(1, total_updates - warmup_updates), lr_min=min_lr,
                                 warmup_t=warmup_updates, warmup_lr_init=0.0, warmup_prefix=True,
                                 t_in_epochs=False, cycle_limit=1)


def epoch_cosine_schedule(optimizer, epochs: int, updates_per_epoch: int, warmup_epochs: float,
                          min_lr: float = 0.0) -> CosineLRScheduler:
    """`cosine_schedule` for a recipe that counts in epochs: warm-up of round(warmup_epochs x updates_per_epoch)
    updates, then cosine over the rest of epochs x updates_per_epoch."""
    return cosine_schedule(optimizer, epochs * updates_per_epoch, int(round(warmup_epochs * updates_per_epoch)), min_lr)


class JsonlLogger:
    """Append-only JSON lines, flushed per line (rank 0 only)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._f = open(path, "a") if path else None

    def write(self, **record) -> None:
        if self._f:
            self._f.write(json.dumps(record, allow_nan=True) + "\n")
            self._f.flush()

    def rewind(self, epoch: int) -> None:
        """Keep only records up to `epoch` (what the checkpoint being resumed holds): a killed run may have
        logged steps of an epoch it never saved, or cut a line short."""
        if not self._f:
            return
        self._f.close()
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or record.get("epoch", -1) <= epoch:
                kept.append(line)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(f"{line}\n" for line in kept)))
        self._f = open(self.path, "a")

    def close(self) -> None:
        if self._f:
            self._f.close()


def amp_context(device: str, amp: str):
    """(autocast context, GradScaler or None) for amp in {none, bf16, fp16}; AMP only on CUDA."""
    if amp not in ("none", "bf16", "fp16"):
        raise MaeBenchError(f"amp must be none, bf16 or fp16, got {amp!r}")
    if not device.startswith("cuda") or amp == "none":
        return nullcontext, None
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


class Hook:
    """A piece of a run that the engine calls at fixed points (detectron2's HookBase): after every optimiser
    update (EMA), after every epoch (evaluation, best checkpoint: it may add metrics to the epoch's `stats`,
    which are logged), and state a checkpoint keeps under `extra_state` so that a resumed run continues it."""

    def after_update(self, engine: "Engine") -> None:
        pass

    def after_epoch(self, engine: "Engine", epoch: int, stats: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Engine:
    """Runs `total_updates` optimiser updates of a model, in epochs of `updates_per_epoch`, under
    DDP/AMP/accumulation with checkpoints and logs in `run_dir`. `scheduler` sets the lr of every update
    (`step_update(update)`, timm's interface; None: the optimiser's lr throughout)."""

    def __init__(self, model, optimizer, *, scheduler, run_dir, dist: DistInfo, total_updates: int,
                 updates_per_epoch: int, accum_iter: int = 1, amp: str = "none", clip_grad: float | None = None,
                 seed: int = 0, save_every: int = 1, keep_last: int = 2, log_every: int = 20,
                 config: dict | None = None, tensorboard: bool = False, desc: str = "train",
                 module: torch.nn.Module | None = None, hooks=()):
        if updates_per_epoch < 1 or total_updates % updates_per_epoch:
            raise MaeBenchError(f"{total_updates} updates do not split into epochs of {updates_per_epoch}")
        self.model, self.optimizer, self.dist = model, optimizer, dist
        self.module = module if module is not None else unwrap_model(model)  # what checkpoints hold
        self.hooks = list(hooks)
        self.run_dir = Path(run_dir)
        self.total_updates, self.updates_per_epoch, self.accum_iter = total_updates, updates_per_epoch, accum_iter
        self.epochs = total_updates // updates_per_epoch
        self.scheduler = scheduler
        self.autocast, self.scaler = amp_context(dist.device, amp)
        self.clip_grad, self.seed = clip_grad, seed
        self.save_every, self.keep_last, self.log_every = save_every, keep_last, log_every
        self.config = config or {}
        self.desc = desc
        self.start_epoch = 0
        self._resumed_state: dict = {}  # extra_state read on resume, kept in later checkpoints
        if dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = JsonlLogger(self.run_dir / "log.jsonl" if dist.is_main else None)
        self.tb = self._tensorboard() if tensorboard and dist.is_main else None

    def note(self, record: dict) -> None:
        """A record in log.jsonl beside the training's (e.g. a choice made at start-up); after `resume`, which
        rewinds the log."""
        self.log.write(**record)

    @property
    def extra_state(self) -> dict:
        """What a checkpoint keeps beside the weights: the resumed checkpoint's, updated by every hook's state."""
        state = dict(self._resumed_state)
        for hook in self.hooks:
            state.update(hook.state_dict())
        return state

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MaeBenchError("runtime.tensorboard=True needs the tensorboard package (pip install tensorboard)") from None
        return SummaryWriter(str(self.run_dir / "tb"))

    # ---- checkpoints -----------------------------------------------------------------
    def checkpoint_path(self, epoch: int | None = None) -> Path:
        return self.run_dir / ("checkpoint-last.pth" if epoch is None else f"checkpoint-{epoch}.pth")

    def save(self, epoch: int) -> None:
        """checkpoint-last.pth every epoch; checkpoint-<epoch>.pth every `save_every` (keep `keep_last`)."""
        if not self.dist.is_main:
            return
        extra_state = self.extra_state
        state = dict(optimizer=self.optimizer, epoch=epoch, scaler=self.scaler, config=self.config,
                     extra={"extra_state": extra_state} if extra_state else None)
        save_checkpoint(self.checkpoint_path(), self.module.state_dict(), **state)
        if (epoch + 1) % self.save_every == 0 or epoch + 1 == self.epochs:
            copy_atomic(self.checkpoint_path(), self.checkpoint_path(epoch))
            numbered = sorted((int(m.group(1)), p) for p in self.run_dir.glob("checkpoint-*.pth")
                              if (m := re.fullmatch(r"checkpoint-(\d+)\.pth", p.name)))
            for _, old in numbered[:-self.keep_last] if self.keep_last > 0 else []:
                old.unlink(missing_ok=True)

    def resume(self, resume: str | None) -> int:
        """Load model, optimiser, scaler and epoch from `auto` (RUN/checkpoint-last.pth if present)
        or a path; returns the epoch to start from."""
        if not resume:
            return 0
        path = self.checkpoint_path() if resume == "auto" else Path(resume)
        if resume == "auto" and not path.exists():
            return 0
        ckpt = read_checkpoint(path)
        if "model" not in ckpt:
            raise MaeBenchError(f"cannot resume from {path}: it holds no 'model' weights")
        load_strict(self.module, ckpt["model"], path, "the model this run trains")
        if ckpt.get("optimizer"):
            try:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            except ValueError as e:  # parameter groups differ: another recipe, or an older mae-bench
                raise MaeBenchError(f"cannot resume from {path}: its optimiser state does not fit this run's "
                                    f"parameter groups ({e}); start a new run folder") from None
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self._resumed_state = dict(ckpt.get("extra_state") or {})
        for hook in self.hooks:
            hook.load_state_dict(self._resumed_state)
        for hook in self.hooks:  # what a hook holds now is its own (and need not be held twice: EMA's raw weights)
            for key in hook.state_dict():
                self._resumed_state.pop(key, None)
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.log.rewind(int(ckpt["epoch"]))
        self.log.write(type="resume", epoch=int(ckpt["epoch"]), checkpoint=str(path))
        if self.dist.is_main:
            print(f"resumed from {path} (epoch {ckpt['epoch']} done)")
        return self.start_epoch

    # ---- training --------------------------------------------------------------------
    def fit(self, make_loader, step_fn) -> dict:
        """Train from `start_epoch` to `epochs`. `make_loader(epoch)` returns an iterable of batches
        (already sharded for this rank); `step_fn(model, batch)` returns (loss, n_images_on_this_rank).
        Returns the last epoch's stats, with what the hooks added. A resumed run that had finished trains
        nothing and runs the hooks of its last epoch once more (its evaluation), logging and saving nothing."""
        last = {}
        for epoch in range(self.start_epoch, self.epochs):
            seed_all(self.seed, epoch, self.dist.rank)
            self.model.train()
            stats = self._epoch(epoch, make_loader(epoch), step_fn)
            self._after_epoch(epoch, stats)
            self.log.write(type="epoch", epoch=epoch, **stats)  # before the checkpoint: a resume rewinds the log
            self.save(epoch)
            if self.tb:
                for k, v in stats.items():
                    self.tb.add_scalar(f"epoch/{k}", v, epoch)
            last = stats
            barrier(self.dist)
        self.log.close()
        if self.start_epoch >= self.epochs and self.epochs > 0:  # resumed a finished run: evaluate once more
            last = self._after_epoch(self.epochs - 1, {})
        return last

    def is_last(self, epoch: int) -> bool:
        return epoch + 1 == self.epochs

    def _after_epoch(self, epoch: int, stats: dict) -> dict:
        for hook in self.hooks:
            hook.after_epoch(self, epoch, stats)
        return stats

    def _epoch(self, epoch: int, loader, step_fn) -> dict:
        model, opt = self.model, self.optimizer
        n_iter = len(loader)
        desc = f"{self.desc} {epoch + 1}/{self.epochs}"
        # a bar on a terminal; in a log file (CI, cluster jobs) a plain line every PLAIN_PROGRESS_S and at the end
        plain = self.dist.is_main and not sys.stderr.isatty()
        bar = tqdm(loader, total=n_iter, desc=desc, leave=False, disable=plain or not self.dist.is_main,
                   dynamic_ncols=True)
        shown = time.perf_counter()
        loss_sum, seen, t0, tick, tick_images = 0.0, 0, time.perf_counter(), time.perf_counter(), 0
        opt.zero_grad(set_to_none=True)
        for it, batch in enumerate(bar):
            update = epoch * self.updates_per_epoch + it // self.accum_iter
            boundary = (it + 1) % self.accum_iter == 0
            if it % self.accum_iter == 0 and self.scheduler is not None:
                self.scheduler.step_update(update)
            sync = nullcontext() if boundary or not self.dist.enabled else model.no_sync()
            with sync:
                with self.autocast():
                    loss, n_images = step_fn(model, batch)
                value = all_reduce_mean(loss.detach().float().reshape(1), self.dist).item()
                if not math.isfinite(value):
                    self.log.write(type="error", epoch=epoch, step=it, loss=value)
                    raise TrainingDiverged(
                        f"loss is {value} at epoch {epoch} step {it}; stopped. The last good checkpoint is "
                        f"{self.checkpoint_path()}" + ("" if self.checkpoint_path().exists() else " (none yet)"))
                scaled = loss / self.accum_iter
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            if boundary:
                self._optimizer_step()
            loss_sum += value
            seen += n_images * self.dist.world_size
            tick_images += n_images * self.dist.world_size
            if (it + 1) % self.log_every == 0 or it + 1 == n_iter:
                now = time.perf_counter()
                lr = max(g["lr"] for g in opt.param_groups)
                img_s = tick_images / max(now - tick, 1e-9)
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", img_s=f"{img_s:.1f}")
                if plain and (now - shown >= PLAIN_PROGRESS_S or it + 1 == n_iter):
                    print(f"{desc}: {it + 1}/{n_iter} loss {value:.4f} lr {lr:.2e} {img_s:.1f} img/s",
                          file=sys.stderr, flush=True)
                    shown = now
                self.log.write(type="step", epoch=epoch, step=it, update=update, loss=value, lr=lr, img_s=img_s)
                if self.tb:
                    self.tb.add_scalar("train/loss", value, update)
                    self.tb.add_scalar("train/lr", lr, update)
                tick, tick_images = now, 0
        bar.close()
        wall = time.perf_counter() - t0
        return {"loss": loss_sum / max(1, n_iter), "lr": max(g["lr"] for g in opt.param_groups),
                "images": seen, "seconds": wall, "img_s": seen / max(wall, 1e-9)}

    def _optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.clip_grad:
            # the trained module's parameters: `module` (what checkpoints hold) may be another model, e.g. an EMA
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for hook in self.hooks:
            hook.after_update(self)
