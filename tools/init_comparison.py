"""A small measured experiment: MAE vs supervised vs scratch initialisation on the synthetic scenes.

    python -m tools.init_comparison --out runs/init_cmp [--tasks in1k_linear in1k_linear@avg in1k_finetune]
        [--pretrain-epochs 40] [--supervised-epochs 20] [--train 600 --val 150 --img-size 64]
        [--set-pretrain k=v ...] [--set-task k=v ...]

Generates the scenes (64 px), pretrains a ViT-Tiny/16 MAE, trains the supervised-from-scratch
baseline (`in1k_finetune --recipe supervised_smoke --ckpt scratch`), then runs each task with
the three inits on the `smoke` recipes and prints one Markdown table (also `OUT/comparison.md`).
A task may name a variant: `in1k_linear@avg` is the linear probe on average-pooled patch tokens
instead of the cls token (the paper, appendix A.1: "our MAE works similarly well ... with average pooling").
"""
import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.config import load_recipe, parse_overrides
from benchmarks.orchestration.suite import init_ckpts
from transfer.synth import generate
from benchmarks.running import run_task
from benchmarks.tasks import TASKS, downstream_tasks
from mae_core.errors import MaeBenchError
from results.record import read_result

ARCH = "vit_tiny_patch16"
VARIANTS = {"avg": {"model.global_pool": "avg"}}  # task@variant -> extra recipe overrides
TASK_CHOICES = sorted(downstream_tasks()) + [f"{t}@{v}" for t in ("in1k_linear", "in1k_partial") for v in VARIANTS]


def _split(task: str) -> tuple[str, dict]:
    name, _, variant = task.partition("@")
    return name, VARIANTS[variant] if variant else {}


def compare(out: Path, tasks: list[str], pretrain_epochs: int, pretrain_sets: list[str], seed: int = 0,
            n_train: int = 600, n_val: int = 150, img_size: int = 64, task_sets: tuple[str, ...] = (),
            supervised_epochs: int = 20) -> str:
    """The steps a user would type (`data synth`, `pretrain`, `run`), called as the suite calls them; each run
    folder is resumed (`--resume auto`), so a finished step is not repeated."""
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    t0 = time.time()
    if not (data / "synth.json").exists():
        generate(data, n_train=n_train, n_val=n_val, img_size=img_size, seed=seed, progress=False)
    size = {"model.img_size": img_size}
    own = parse_overrides(list(task_sets))
    pre_cfg = load_recipe("pretrain", "smoke", {**size, **parse_overrides(pretrain_sets),
                                                "schedule.epochs": pretrain_epochs, "runtime.seed": seed})
    run_task("pretrain", pre_cfg, init="scratch", arch=None, data=str(data / "imagenet" / "train"), out=str(out / "mae"),
             resume="auto")
    sup_cfg = load_recipe(TASKS["in1k_finetune"].recipes, "supervised_smoke",
                          {**size, **own, "schedule.epochs": supervised_epochs})
    run_task("in1k_finetune", sup_cfg, init="scratch", arch=ARCH, data=str(data), out=str(out / "supervised"),
             resume="auto")
    inits = init_ckpts(out / "mae", out / "supervised")
    rows = {}
    for task in tasks:
        name_, extra = _split(task)
        spec = TASKS[name_]
        sized = {**size, **own} if spec.classification else own  # det / seg keep their recipe's input size
        for name, ckpt in inits.items():
            run = out / task.replace("@", "_") / name
            cfg = load_recipe(spec.recipes, "smoke", {**sized, **extra})
            run_task(name_, cfg, init=ckpt, arch=ARCH, data=str(data), out=str(run), resume="auto")
            rows[(task, name)] = read_result(run)["metrics"]
    lines = [f"| task | metric | {' | '.join(inits)} |", "|---|---|" + "---|" * len(inits)]
    for task in tasks:
        m = TASKS[_split(task)[0]].metrics[0]
        lines.append(f"| {task} | {m} | " + " | ".join(f"{rows[(task, n)][m]:.1f}" for n in inits) + " |")
    sup = read_result(out / "supervised")["metrics"]
    table = "\n".join(lines) + (f"\n\nsupervised-from-scratch baseline itself ({ARCH}, in1k_finetune supervised_smoke):"
                                f" top1 {sup['top1']:.1f} after {supervised_epochs} epochs; MAE pretraining"
                                f" {pretrain_epochs} epochs; {n_train} train / {n_val} val scenes at {img_size} px; "
                                f"total {time.time() - t0:.0f}s")
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(json.dumps({f"{t}/{n}": v for (t, n), v in rows.items()}, indent=2))
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/init_comparison")
    p.add_argument("--tasks", nargs="+", default=["in1k_linear", "in1k_finetune"], choices=TASK_CHOICES)
    p.add_argument("--pretrain-epochs", type=int, default=40)
    p.add_argument("--supervised-epochs", type=int, default=20, help="the supervised-from-scratch baseline's schedule")
    p.add_argument("--set-pretrain", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--set-task", action="append", default=[], metavar="KEY=VALUE", help="for every task run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=600, help="synthetic training scenes")
    p.add_argument("--val", type=int, default=150)
    p.add_argument("--img-size", type=int, default=64)
    a = p.parse_args(argv)
    from mae_core.threads import configure_threads
    configure_threads()  # as the CLI: OMP_NUM_THREADS wins when set
    try:
        print(compare(Path(a.out), a.tasks, a.pretrain_epochs, a.set_pretrain, a.seed, a.train, a.val, a.img_size,
                      tuple(a.set_task), a.supervised_epochs))
    except MaeBenchError as e:
        print(f"init_comparison: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
