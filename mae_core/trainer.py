"""A task's training as small overridable methods (detectron2's `DefaultTrainer` and its `build_*`): `build` makes
the pieces in the one order every task shares, `train` drives the engine over them and returns the task's result."""
from pathlib import Path

import torch
from timm.optim import param_groups_weight_decay
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import save_checkpoint
from .cpu_linear import select_cpu_linear
from .distributed import DistInfo
from .engine import Engine, adamw, batch_plan, epoch_cosine_schedule, scaled_lr


class Trainer:
    """One training of a task from its resolved recipe `cfg` in the run folder `out` (resume: `auto` or a path). A
    task subclasses it, overrides what differs, each method alone (overriding `build_optimizer` changes the optimiser
    and nothing else), and supplies `build_model`, `build_config`, `build_train_loader(epoch)`, `run_step(net, batch)
    -> (loss, images)`, `describe(engine)` (the start-up line) and `finish(stats)` (the task's result from the last
    epoch's stats). The defaults are MAE pretraining's: `schedule.epochs` passes over the training set, lr = blr x
    effective batch / 256, AdamW over `param_groups()`, per-update warm-up + cosine."""

    desc = "train"  # the progress bar's name
    save_final = False  # RUN/model_final.pth: the trained model `--eval-only --weights` reads

    def __init__(self, cfg: dict, dist: DistInfo, out, resume: str | None = None, train_set=None):
        self.cfg, self.dist, self.out, self.resume, self.train_set = cfg, dist, Path(out), resume, train_set

    def build(self) -> "Trainer":
        """The pieces in this order, the model first (its initialisation draws the first random numbers)."""
        self.model = self.build_model()
        self.notes = self.build_notes()
        self.train_set = self.build_train_set()
        self.total_updates, self.updates_per_epoch, self.batch = self.plan()
        self.lr = self.base_lr()
        self.optimizer = self.build_optimizer()
        self.scheduler = self.build_lr_scheduler()
        self.hooks = self.build_hooks()
        self.config = self.build_config()  # every checkpoint's "config"
        return self

    def build_notes(self) -> list[dict]:
        """log.jsonl records of start-up choices: the recipe's `runtime.cpu_linear`, resolved (none in coco_det's)."""
        runtime = self.cfg["runtime"]
        return ([select_cpu_linear(self.model, runtime, self.dist.device, self.out, self.resume)]
                if "cpu_linear" in runtime else [])

    def build_train_set(self):
        return self.train_set  # the one given: a task builds it beside its evaluation set

    def plan(self) -> tuple[int, int, int]:
        """(optimiser updates, updates per epoch, effective batch)."""
        schedule = self.cfg["schedule"]
        updates, batch = batch_plan(len(self.train_set), schedule["batch_size"], schedule["accum_iter"], self.dist)
        return schedule["epochs"] * updates, updates, batch

    def base_lr(self) -> float:
        return scaled_lr(self.cfg["optim"]["blr"], self.batch, self.cfg["optim"]["lr"])

    def build_optimizer(self):
        return adamw(self.param_groups(), lr=self.lr, betas=self.cfg["optim"]["betas"])

    def param_groups(self) -> list[dict]:
        """As official main_pretrain.py: timm's add_weight_decay without a skip list, i.e. no decay only on 1-D
        parameters and biases (cls_token and mask_token are decayed; frozen ones, the pos embeddings, in no group)."""
        return param_groups_weight_decay(self.model, self.cfg["optim"]["weight_decay"])

    def build_lr_scheduler(self):
        """Any object with timm's `step_update(update)`."""
        schedule = self.cfg["schedule"]
        return epoch_cosine_schedule(self.optimizer, schedule["epochs"], self.updates_per_epoch,
                                     schedule["warmup_epochs"], self.cfg["optim"]["min_lr"])

    def build_hooks(self) -> list:
        return []  # evaluation, the best checkpoint, EMA, counters (`mae_core.hooks`)

    @property
    def saved(self):
        return self.model  # what checkpoints and model_final.pth hold (with EMA, the averaged model)

    @property
    def trained(self):
        return self.model  # what the optimiser differentiates through (under DDP)

    def on_start(self, engine: Engine) -> None:
        if self.dist.is_main:  # after the resume, before training
            print(self.describe(engine))

    def train(self) -> dict:
        """`trained` under DDP (and torch.compile with runtime.compile), the engine with the recipe's settings
        (checkpoints hold `saved`), the resume, the notes, `on_start`, the epochs with their hooks, checkpoints and
        logs, model_final.pth when asked; returns `finish(the last epoch's stats)`. A resumed finished run trains
        nothing and evaluates once more."""
        dist, runtime, net = self.dist, self.cfg["runtime"], self.trained
        if dist.enabled:
            net = DistributedDataParallel(net, device_ids=[dist.local_rank] if dist.device.startswith("cuda") else None)
        if runtime.get("compile", False):
            net = torch.compile(net)
        engine = Engine(net, self.optimizer, scheduler=self.scheduler, run_dir=self.out, dist=dist,
                        total_updates=self.total_updates, updates_per_epoch=self.updates_per_epoch,
                        accum_iter=self.cfg["schedule"].get("accum_iter", 1), amp=runtime["amp"],
                        clip_grad=self.cfg["optim"].get("clip_grad"), seed=runtime["seed"],
                        save_every=runtime["save_every"], keep_last=runtime["keep_last"], log_every=runtime["log_every"],
                        tensorboard=runtime.get("tensorboard", False), desc=self.desc, module=self.saved,
                        config=self.config, hooks=self.hooks)
        engine.resume(self.resume)
        for record in self.notes:
            engine.note(record)
        self.on_start(engine)
        stats = engine.fit(self.build_train_loader, self.run_step)
        if self.save_final and self.dist.is_main:
            save_checkpoint(self.out / "model_final.pth", self.saved.state_dict(), epoch=engine.epochs - 1,
                            config=self.config)
        return self.finish(stats)
