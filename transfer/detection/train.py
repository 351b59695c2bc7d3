"""`coco_det`: ViTDet Mask R-CNN training and COCO evaluation on the shared engine."""
import sys
from pathlib import Path

import torch
import torch.distributed as tdist
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from mae_core.distributed import DistInfo
from mae_core.engine import Engine, Hook, amp_context
from mae_core.hooks import Counter, PeriodicEval
from mae_core.runner import Trained, run
from mae_core.trainer import Trainer
from mae_core.errors import MaeBenchError
from transfer.leakage import check_distinct_splits, count_leakage
from results.evidence import COCO_EVAL_FILE, write_coco_eval

from .data import CocoInstances, collate, resolve_root
from .evaluate import RESULTS_FILE, coco_eval, predict, write_results
from .model import detector_from_init, param_groups

LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


def make_scheduler(optimizer, total_updates: int, *, lr: float, warmup_iters: int, warmup_factor: float,
                   lr_schedule: str, milestones=(), min_lr: float = 0.0):
    """Per-update lr, in iterations as detectron2's LRMultiplier: linear warm-up over `warmup_iters` from
    lr x warmup_factor, then ViTDet's steps (x0.1 at each iteration of `milestones`) or a half-cycle cosine to
    min_lr over all `total_updates`. Honours lr_scale."""
    warmup = min(warmup_iters, max(0, total_updates - 1))
    common = dict(warmup_t=warmup, warmup_lr_init=lr * warmup_factor, t_in_epochs=False)
    if lr_schedule == "step":
        # timm steps at update m - 1 for a milestone m (it counts t + 1), detectron2 from update m: shift by one
        return MultiStepLRScheduler(optimizer, decay_t=[m + 1 for m in milestones], decay_rate=0.1,
                                    warmup_prefix=False, **common)
    if lr_schedule == "cosine":
        return CosineLRScheduler(optimizer, t_initial=max(1, total_updates), lr_min=min_lr, cycle_limit=1, **common)
    raise MaeBenchError(f"schedule.lr_schedule must be step or cosine, got {lr_schedule!r}")


def milestones(schedule: dict, total_updates: int) -> list[int]:
    """The iterations of ViTDet's x0.1 steps in a run of `total_updates`: the recipe's `schedule.milestones` are
    iterations of a `schedule.max_iter`-iteration run (ViTDet's config), placed at the same fraction of this run
    (`m * total_updates // max_iter`: exactly those iterations when it runs max_iter)."""
    max_iter, ms = schedule["max_iter"], tuple(schedule["milestones"])
    if not all(isinstance(m, int) and 0 < m < max_iter for m in ms) or list(ms) != sorted(ms):
        raise MaeBenchError(f"schedule.milestones must be increasing iterations in (0, schedule.max_iter={max_iter}), "
                            f"got {ms!r}")
    return [m * total_updates // max_iter for m in ms]


def run_detection(cfg: dict, *, init: str, arch: str | None, data: str, out: str, resume: str | None = None,
                  eval_only: bool = False, weights: str | None = None) -> dict:
    """Train (unless eval_only) and evaluate Mask R-CNN; returns {"metrics", "init", "arch", "dataset", "device"}.
    With eval_only, `weights` is the trained detector to evaluate (run_task checks the pair)."""
    return run(cfg, lambda dist: _build(cfg, init, arch, data, out, resume, eval_only, weights, dist))


def _datasets(cfg: dict, root: Path, train: bool):
    data_cfg, model_cfg, runtime = cfg["data"], cfg["model"], cfg["runtime"]
    common = dict(img_size=model_cfg["img_size"], strict=data_cfg["strict"], seed=runtime["seed"])
    if train and data_cfg["train_split"] != data_cfg["val_split"]:  # the same name: asked for (memorisation tests)
        check_distinct_splits(root / data_cfg["train_split"], root / data_cfg["val_split"])
    val_set = CocoInstances(root, data_cfg["val_split"], train=False, subset=data_cfg["val_subset"], **common)
    if not train:
        return None, val_set
    train_set = CocoInstances(root, data_cfg["train_split"], train=True, subset=data_cfg["subset"],
                              scale_range=data_cfg["scale_range"], flip=data_cfg["flip"], **common)
    if train_set.cat_ids != val_set.cat_ids:
        raise MaeBenchError(f"{data_cfg['train_split']} and {data_cfg['val_split']} have different categories")
    return train_set, val_set


def _split_facts(train_set, val_set, root: Path, out: Path, dist: DistInfo) -> dict:
    """The dataset record's annotation issues per split (`CocoInstances.issues`, warned about once) and the validation
    images byte-identical to training images (`transfer.leakage`)."""
    sets = {"val": val_set, **({"train": train_set} if train_set is not None else {})}
    facts = {"annotation_issues": {split: ds.issues for split, ds in sets.items()}}
    for split, ds in sets.items():
        if ds.issue_text() and dist.is_main:
            print(f"warning: COCO {ds.split}: {ds.issue_text()} (recorded in result.json's "
                  "dataset.annotation_issues)", file=sys.stderr)
    if train_set is not None:
        facts["val_duplicates_of_train"] = count_leakage(
            [train_set.img_dir / train_set.coco.imgs[i]["file_name"] for i in train_set.ids],
            [val_set.img_dir / val_set.coco.imgs[i]["file_name"] for i in val_set.ids], root, out)
    return facts


class DetectionStep(Hook):
    """`step(net, batch) -> (loss, n)`: the sum of Mask R-CNN's losses, the training images skipped as unreadable
    counted in `skipped`; as a hook, each loss term's mean over the epoch in the epoch's stats."""

    def __init__(self, device: str, skipped: Counter):
        self.device, self.skipped, self.losses, self.steps = device, skipped, dict.fromkeys(LOSS_NAMES, 0.0), 0

    def __call__(self, net, batch):
        images, targets, bad = batch
        self.skipped.add(bad)
        if not images:  # every image of the batch was unreadable: a zero loss keeps DDP in step
            return sum(p.sum() * 0 for p in net.parameters() if p.requires_grad), 0
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()}
                   for t in targets]
        losses = net(images, targets)
        for k, v in losses.items():
            self.losses[k] = self.losses.get(k, 0.0) + float(v.detach())
        self.steps += 1
        return sum(losses.values()), len(images)

    def after_epoch(self, engine: Engine, epoch: int, stats: dict) -> None:
        stats.update({k: v / max(1, self.steps) for k, v in self.losses.items()})
        self.losses, self.steps = dict.fromkeys(LOSS_NAMES, 0.0), 0


def _build(cfg, init, arch, data, out, resume, eval_only: bool, weights: str | None, dist: DistInfo) -> Trainer | dict:
    """The detector's trainer, or with eval_only the result of evaluating `weights`."""
    trained = Trained(weights, cfg["task"], cfg, dist) if eval_only else None
    if eval_only:
        cfg = trained.cfg  # evaluated with the model settings it was trained with
    root, name = resolve_root(data)
    train_set, val_set = _datasets(cfg, root, train=not eval_only)
    data_cfg, out = cfg["data"], Path(out)
    dataset = {"name": name, "root": str(root), "split": data_cfg["val_split"], "subset": data_cfg["subset"],
               "val_subset": data_cfg["val_subset"], "val_images": len(val_set), "num_classes": len(val_set.cat_ids),
               "skipped": {"val": val_set.skipped}, **_split_facts(train_set, val_set, root, out, dist)}
    job = DetectionTrainer(cfg, dist, out, resume, init, arch, train_set, val_set, root, dataset)
    if not eval_only:
        return job.build()
    job.model = job.build_model()
    job.info = trained.load(job.model, job.info, "this detector")
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    return job.result(job.test())


class DetectionTrainer(Trainer):
    """The detector's training: `epochs` passes over the training images, ViTDet's lr schedule in updates, COCO
    evaluation every runtime.eval_every-th pass and after the last; its result has the last evaluation's
    bbox_ and segm_ metrics."""

    save_final = True

    def __init__(self, cfg: dict, dist: DistInfo, out, resume, init: str, arch: str | None, train_set, val_set,
                 root: Path, dataset: dict):
        super().__init__(cfg, dist, out, resume, train_set)
        self.init, self.arch, self.val_set, self.root, self.dataset = init, arch, val_set, root, dataset
        self.desc = cfg["task"]
        self.skipped = Counter("skipped_samples")  # training images skipped as unreadable, kept over a resume
        self.step = DetectionStep(self.dist.device, self.skipped)

    def build_model(self):
        model, self.info = detector_from_init(self.cfg["model"], self.init, self.arch, len(self.val_set.cat_ids))
        return model.to(self.dist.device)

    def base_lr(self):
        optim = self.cfg["optim"]
        return optim["lr"] * self.batch / optim["lr_batch"]  # the paper's lr is for lr_batch images; scale linearly

    def param_groups(self):
        optim = self.cfg["optim"]
        return param_groups(self.model, optim["weight_decay"], optim["layer_decay"], len(self.model.backbone.net.blocks),
                            optim["weight_decay_norm"], optim["zero_decay"])

    def build_lr_scheduler(self):
        schedule = self.cfg["schedule"]
        return make_scheduler(self.optimizer, self.total_updates, lr=self.lr, warmup_iters=schedule["warmup_iters"],
                              warmup_factor=schedule["warmup_factor"], lr_schedule=schedule["lr_schedule"],
                              milestones=self.lr_steps(), min_lr=self.cfg["optim"]["min_lr"])

    def lr_steps(self) -> list[int]:
        schedule = self.cfg["schedule"]
        return milestones(schedule, self.total_updates) if schedule["lr_schedule"] == "step" else []

    def build_hooks(self):
        return [self.step, self.skipped, PeriodicEval(self.test, self.cfg["runtime"]["eval_every"])]

    def build_config(self):
        return {"task": self.cfg["task"], "arch": self.info["arch"], "categories": self.val_set.cat_ids,
                "recipe": self.cfg, "init": {k: self.info[k] for k in ("kind", "ckpt", "arch")}}

    def build_train_loader(self, epoch: int):
        train_set, dist = self.train_set, self.dist
        train_set.set_epoch(epoch)
        sampler = DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                     seed=self.cfg["runtime"]["seed"], drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(train_set, batch_size=self.cfg["schedule"]["batch_size"], sampler=sampler, drop_last=True,
                          collate_fn=collate, num_workers=self.cfg["data"]["num_workers"],
                          pin_memory=dist.device.startswith("cuda"))

    def run_step(self, net, batch):
        return self.step(net, batch)

    def describe(self, engine):
        info, steps, sets = self.info, ", ".join(map(str, self.lr_steps())), (("train", self.train_set), ("val", self.val_set))
        notes = "".join(f"\nnote: {split} skipped {ds._skip_text()}" for split, ds in sets if any(ds.skipped.values()))
        return (f"{self.cfg['task']}: {info['kind']} {info['arch']} on {len(self.train_set)} train / {len(self.val_set)} "
                f"val images ({len(self.val_set.cat_ids)} classes, {self.root}); effective batch {self.batch}, lr "
                f"{self.lr:.3g}, {self.total_updates} updates" + (f" (x0.1 at {steps})" if steps else "")
                + f", {info['params']:,} parameters{notes}")

    def test(self, epoch: int | None = None, last: bool = True) -> dict:
        """The detector's predictions on val (each process its shard, gathered on rank 0), written as
        RUN/coco_instances_results.json and scored by pycocotools (rank 0; other ranks get {})."""
        dist, val_set, cfg = self.dist, self.val_set, self.cfg
        autocast = amp_context(dist.device, cfg["runtime"]["eval_amp"])[0]  # detectron2 evaluates in float32
        loader = DataLoader(Subset(val_set, range(dist.rank, len(val_set), dist.world_size)),
                            batch_size=cfg["schedule"]["eval_batch_size"], collate_fn=collate,
                            num_workers=cfg["data"]["num_workers"])
        bar = tqdm(total=len(loader.dataset), desc="coco eval", leave=False,
                   disable=None if dist.is_main else True)  # None: off when stderr is no terminal
        results, ids, dropped = predict(self.model, loader, dist.device, val_set.cat_ids, autocast, bar)
        bar.close()
        if dist.enabled:
            parts = [None] * dist.world_size if dist.is_main else None
            tdist.gather_object((results, ids, dropped), parts, dst=0)
            if not dist.is_main:
                return {}
            results, ids, dropped = ([x for p in parts for x in p[0]], [x for p in parts for x in p[1]],
                                     sum(p[2] for p in parts))
        write_results(self.out / RESULTS_FILE, results)
        write_coco_eval(self.out / COCO_EVAL_FILE, val_set.ann_file.resolve(), ids)  # for paired re-scoring
        metrics = coco_eval(val_set.coco, results, ids)
        if dropped:
            metrics["eval_unreadable_images"] = dropped
        print("coco eval: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if k.endswith(("AP", "AP50"))))
        return metrics

    def finish(self, stats: dict) -> dict:
        self.dataset.update(train_images=len(self.train_set), skipped={"train": self.train_set.skipped,
                            "val": self.val_set.skipped}, skipped_samples=self.skipped.value)
        return self.result({k: v for k, v in stats.items() if k.startswith(("bbox_", "segm_"))})

    def result(self, metrics: dict) -> dict:
        return {"metrics": metrics, "init": self.info, "arch": self.info["arch"], "device": self.dist.device,
                "dataset": self.dataset}
