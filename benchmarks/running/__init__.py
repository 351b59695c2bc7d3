"""Running and recording one task: the run folder claimed (`run_folder`), the task's runner called, and its
result record (`RUN/result.json`) written."""
import os
import sys
import time
from pathlib import Path

from mae_core.errors import MaeBenchError
from results.record import collect_env, make_record, now_iso, write_result

from ..tasks import TASKS, Task, get_task


def run_task(task: str, cfg, *, init: str, arch: str | None, data: str, out: str, resume: str | None,
             options: dict | None = None) -> dict | None:
    """Run a task as the recipe says and write RUN/result.json (rank 0); returns the record.
    `options` holds the task's TASK_OPTIONS (None / False = not given)."""
    from ..running.run_folder import claim  # mmengine: not for `mae-bench --help`

    spec = get_task(task)
    options = {k: v for k, v in (options or {}).items() if v not in (None, False)}
    for key in options:
        if key not in spec.options:
            users = ", ".join(t.name for t in TASKS.values() if key in t.options) or "no task"
            raise MaeBenchError(f"--{key.replace('_', '-')} applies to {users}, not {task}")
    if options.get("eval_only") and not options.get("weights"):
        raise MaeBenchError("--eval-only needs --weights (a trained model such as RUN/model_final.pth)")
    if options.get("weights") and not options.get("eval_only"):
        raise MaeBenchError("--weights is for --eval-only; to start training from an encoder use --ckpt")
    if not Path(data).exists():
        raise MaeBenchError(f"dataset path not found: {data}")
    cfg.task = task
    device = (cfg.get("runtime") or {}).get("device")
    if str(device).startswith("cuda"):  # before the run folder is claimed (recipe.py written)
        from mae_core.distributed import check_device
        check_device(device)
    main = int(os.environ.get("RANK", "0")) == 0
    try:
        identity = _identity(spec, cfg, init=init, arch=arch, data=data, out=out, options=options) if main else None
        with claim(out, cfg, main, identity):
            rec = _run_and_record(spec, cfg, init=init, arch=arch, data=data, out=out, resume=resume, main=main,
                                  options=options)
    finally:  # the identity's read of the checkpoint, kept for the loader (one read per run), is not kept longer
        from mae_core.checkpoint import drop_kept
        drop_kept()
    if rec is not None:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in rec["metrics"].items())
        print(f"{task} ({rec['init']['kind']} {rec['arch']}): {shown}; wrote {out}/result.json")
        if rec["dataset"].get("skipped_samples"):
            print(f"warning: {rec['dataset']['skipped_samples']} training samples were unreadable images and were "
                  "skipped (--strict makes that an error)", file=sys.stderr)
    return rec


def _identity(spec: Task, cfg, *, init, arch, data, out, options) -> dict:
    """The run's identity (task, recipe, init, data), which `claim` checks against the run folder's."""
    from ..config import recipe_text
    from .identity import run_identity
    # pretraining reads a plain image folder (or a root's train/), not a task layout
    layout = None if spec.pretraining else spec.data
    return run_identity(task=spec.name, recipe=recipe_text(cfg), init=None if spec.pretraining else init,
                        arch=arch, data=data, layout=layout, out=out, options=options)


def _run_and_record(task: Task, cfg, *, init, arch, data, out, resume, main, options) -> dict | None:
    from ..config import resolved
    from mae_core.checkpoint import file_sha256  # memoised: the identity has hashed it already

    plain = resolved(cfg)
    started, t0 = now_iso(), time.time()
    res = task.load_runner()(plain, init=init, arch=arch, data=data, out=out, resume=resume, **options)
    if not main:
        return None
    info = res["init"]
    ckpt = info.get("ckpt")
    protocol = plain.get("protocol", task.name)
    extra = {"blocks": plain["blocks"], "blocks_part": plain.get("blocks_part", "all")} if protocol == "partial" else {}
    # the loader hashed the file it read; the identity hashed it too when the loader does not say
    sha = info.get("sha256") or (file_sha256(ckpt) if ckpt else None)
    loaded = {k: info[k] for k in ("format", "method", "arch_spec", "features") if info.get(k)}
    if "dropped" in info:  # every checkpoint key the encoder did not use, and why
        loaded["unused"] = {"count": len(info["dropped"]), "keys": info["dropped"]}
    rec = make_record(task=task.name, protocol=protocol, arch=res["arch"],
                      init={"kind": info["kind"], "ckpt": ckpt, "sha256": sha, **loaded,
                            **({"pretrain": info["pretrain"]} if info.get("pretrain") else {})},
                      dataset=res["dataset"], metrics=res["metrics"], recipe=plain, started=started,
                      finished=now_iso(), wall_s=time.time() - t0, env=collect_env(res.get("device", "cpu")),
                      **extra)
    write_result(out, rec)
    return rec
