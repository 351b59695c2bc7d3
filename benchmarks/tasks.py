"""The task registry: `mae-bench run --task T` -> a runner in `transfer`, and its result record."""
import os
import time
from pathlib import Path

from mae_core.errors import MaeBenchError
from results.record import collect_env, make_record, now_iso, sha256_file, write_result

from .config import resolved
from .run_folder import claim


def _classification(cfg, **kw):
    from transfer.classification.train import run_classification
    return run_classification(cfg, **kw)


def _knn(cfg, **kw):
    from transfer.classification.knn import run_knn
    return run_knn(cfg, **kw)


def _detection(cfg, **kw):
    from transfer.detection.train import run_detection
    return run_detection(cfg, **kw)


def _segmentation(cfg, **kw):
    from transfer.segmentation.train import run_segmentation
    return run_segmentation(cfg, **kw)


TASKS = {
    "in1k_linear": _classification,
    "in1k_partial": _classification,
    "in1k_finetune": _classification,
    "knn": _knn,
    "coco_det": _detection,
    "ade20k_seg": _segmentation,
}
# Task-specific command-line options (`mae-bench run --eval-only --weights W`, `--save-preds`):
# the tasks that take each one; the runner gets them as keyword arguments.
TASK_OPTIONS = {
    "eval_only": ("coco_det", "ade20k_seg"),
    "weights": ("coco_det", "ade20k_seg"),
    "save_preds": ("ade20k_seg",),
}


def run_task(task: str, cfg, *, init: str, arch: str | None, data: str, out: str, resume: str | None,
             options: dict | None = None) -> dict | None:
    """Run a task as the recipe says and write RUN/result.json (rank 0); returns the record.
    `options` holds the task-specific flags of TASK_OPTIONS (None / False = not given)."""
    if task not in TASKS:
        raise MaeBenchError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    options = {k: v for k, v in (options or {}).items() if v not in (None, False)}
    for key in options:
        if task not in TASK_OPTIONS.get(key, ()):
            flag = "--" + key.replace("_", "-")
            raise MaeBenchError(f"{flag} applies to {', '.join(TASK_OPTIONS.get(key, ())) or 'no task'}, not {task}")
    if options.get("eval_only") and not options.get("weights"):
        raise MaeBenchError("--eval-only needs --weights (a trained model such as RUN/model_final.pth)")
    if options.get("weights") and not options.get("eval_only"):
        raise MaeBenchError("--weights is for --eval-only; to start training from an encoder use --ckpt")
    if not Path(data).exists():
        raise MaeBenchError(f"dataset path not found: {data}")
    cfg.task = task
    main = int(os.environ.get("RANK", "0")) == 0
    with claim(out, cfg, main):
        return _run_and_record(task, cfg, init=init, arch=arch, data=data, out=out, resume=resume, main=main,
                               options=options)


def _run_and_record(task, cfg, *, init, arch, data, out, resume, main, options) -> dict | None:
    plain = resolved(cfg)
    started, t0 = now_iso(), time.time()
    res = TASKS[task](plain, init=init, arch=arch, data=data, out=out, resume=resume, **options)
    if not main:
        return None
    info = res["init"]
    ckpt = info.get("ckpt")
    protocol = plain.get("protocol", task)
    extra = {"blocks": plain["blocks"], "blocks_part": plain.get("blocks_part", "all")} if protocol == "partial" else {}
    rec = make_record(task=task, protocol=protocol, arch=res["arch"],
                      init={"kind": info["kind"], "ckpt": ckpt, "sha256": sha256_file(ckpt) if ckpt else None,
                            **({"pretrain": info["pretrain"]} if info.get("pretrain") else {})},
                      dataset=res["dataset"], metrics=res["metrics"], recipe=plain, started=started,
                      finished=now_iso(), wall_s=time.time() - t0, env=collect_env(res.get("device", "cpu")),
                      **extra)
    write_result(out, rec)
    return rec
