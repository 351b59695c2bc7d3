"""A small measured experiment: MAE vs supervised vs scratch initialisation on the synthetic scenes.

    python -m benchmarks.init_comparison --out runs/init_cmp [--tasks in1k_linear in1k_linear@avg in1k_finetune]
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
import time
from pathlib import Path

from benchmarks.cli import main as cli
from benchmarks.suite import init_ckpts
from benchmarks.tasks import TASKS
from results.record import read_result

ARCH = "vit_tiny_patch16"
VARIANTS = {"avg": ["model.global_pool=avg"]}  # task@variant -> extra --set entries
TASK_CHOICES = sorted(TASKS) + [f"{t}@{v}" for t in ("in1k_linear", "in1k_partial") for v in VARIANTS]


def _split(task: str) -> tuple[str, list[str]]:
    name, _, variant = task.partition("@")
    return name, VARIANTS[variant] if variant else []


def _run(argv: list[str]) -> None:
    code = cli(argv)
    if code:
        raise SystemExit(f"step failed ({code}): mae-bench {' '.join(argv)}")


def compare(out: Path, tasks: list[str], pretrain_epochs: int, pretrain_sets: list[str], seed: int = 0,
            n_train: int = 600, n_val: int = 150, img_size: int = 64, task_sets: tuple[str, ...] = (),
            supervised_epochs: int = 20) -> str:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    t0 = time.time()
    if not (data / "synth.json").exists():
        _run(["data", "synth", "--out", str(data), "--seed", str(seed), "--train", str(n_train), "--val", str(n_val),
              "--img-size", str(img_size), "--quiet"])
    sets = [a for s in [f"model.img_size={img_size}", *pretrain_sets] for a in ("--set", s)]
    size_sets = ["--set", f"model.img_size={img_size}"]
    own_sets = [a for s in task_sets for a in ("--set", s)]
    tsets = size_sets + own_sets
    _run(["pretrain", "--data", str(data / "imagenet" / "train"), "--out", str(out / "mae"), "--recipe", "smoke",
          "--epochs", str(pretrain_epochs), "--seed", str(seed), "--resume", "auto", *sets])
    _run(["run", "--task", "in1k_finetune", "--recipe", "supervised_smoke", "--ckpt", "scratch", "--arch", ARCH,
          "--data", str(data), "--out", str(out / "supervised"), "--resume", "auto", *tsets,
          "--set", f"schedule.epochs={supervised_epochs}"])
    inits = init_ckpts(out / "mae", out / "supervised")
    rows = {}
    for task in tasks:
        name_, extra = _split(task)
        vsets = [a for s in extra for a in ("--set", s)]
        for name, ckpt in inits.items():
            run = out / task.replace("@", "_") / name
            sized = tsets if TASKS[name_].classification else own_sets  # det / seg keep their recipe's input size
            _run(["run", "--task", name_, "--recipe", "smoke", "--ckpt", ckpt, "--arch", ARCH, "--data", str(data),
                  "--out", str(run), "--resume", "auto", *sized, *vsets])
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
    print(compare(Path(a.out), a.tasks, a.pretrain_epochs, a.set_pretrain, a.seed, a.train, a.val, a.img_size,
                  tuple(a.set_task), a.supervised_epochs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
