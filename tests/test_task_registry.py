"""The task registry: a new task is one module plus its recipes, and the CLI, the suite, the tables and the
regression keys pick it up with no other file changed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.tasks import TASKS, Task, register_task
from results.record import read_result

REPO = Path(__file__).resolve().parents[1]
TOY = '''"""A toy task: the mean pixel value of the validation images, in percent of 255 (no model at all)."""
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.tasks import register_task


@register_task("toy", data="imagenet", metrics=("mean_color",), eval_data="toy val",
               recipes=str(Path(__file__).parent / "recipes" / "toy"))
def run_toy(cfg, *, init, arch, data, out, resume=None):
    files = sorted((Path(data) / "val").rglob("*.png"))[:cfg["data"]["subset"]]
    mean = np.mean([np.asarray(Image.open(f).convert("RGB"), dtype=np.float64).mean() for f in files])
    kind, ckpt = init.split(":", 1) if ":" in init else ("scratch", None) if init == "scratch" else ("mae", init)
    return {"metrics": {"mean_color": cfg["scale"] * 100 * mean / 255}, "arch": arch,
            "init": {"kind": kind, "ckpt": ckpt},
            "dataset": {"name": "toy", "split": "val", "subset": cfg["data"]["subset"], "val_images": len(files)}}
'''
SCHEMA = '''"""The toy task's recipe keys: their types, ranges and defaults (the `base` recipe)."""
from benchmarks.recipe_schema import NonNegative, Positive, section


@section
class Data:
    subset: Positive | None = None
    strict: bool = False


@section
class Runtime:
    seed: NonNegative = 0


@section
class Recipe:
    scale: float = 1.0
    data: Data
    runtime: Runtime
'''
RECIPES = {"schema.py": SCHEMA, "smoke.py": "scale = 0.5\n"}


def write_toy(folder: Path) -> Path:
    (folder / "recipes" / "toy").mkdir(parents=True)
    (folder / "toy_task.py").write_text(TOY)
    for name, text in RECIPES.items():
        (folder / "recipes" / "toy" / name).write_text(text)
    return folder


def cli(*args, plugin: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MAE_BENCH_TASKS": "toy_task", "PYTHONPATH": os.pathsep.join([str(plugin), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "benchmarks.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_toy_task_is_one_module_and_its_recipes(synth_root, tmp_path):
    plugin = write_toy(tmp_path / "plugin")
    assert sorted(str(p.relative_to(plugin)) for p in plugin.rglob("*.py")) == [
        "recipes/toy/schema.py", "recipes/toy/smoke.py", "toy_task.py"]  # all there is of the task

    proc = cli("run", "--help", plugin=plugin)
    assert "toy" in proc.stdout
    proc = cli("run", "--task", "toy", "--recipe", "smoke", "--ckpt", "scratch", "--arch", "vit_tiny_patch16",
               "--data", synth_root / "imagenet", "--out", tmp_path / "run", "--subset", 4, plugin=plugin)
    assert proc.returncode == 0, proc.stderr
    rec = read_result(tmp_path / "run")
    assert rec["task"] == "toy" and rec["protocol"] == "toy" and rec["recipe"]["scale"] == 0.5
    assert rec["dataset"]["val_images"] == 4 and 0 < rec["metrics"]["mean_color"] <= 50
    assert "toy (scratch vit_tiny_patch16): mean_color" in proc.stdout

    # the tiny suite on the toy task alone: pretraining, a run per init, its table and its regression keys
    baseline = tmp_path / "baseline.json"
    proc = cli("suite", "--name", "tiny", "--data-root", synth_root, "--out", tmp_path / "suite", "--set",
               "tasks=['toy']", "--set", "inits=['mae', 'scratch']", "--set", f"baseline={str(baseline)!r}",
               "--update-baseline", plugin=plugin)
    assert proc.returncode == 0, proc.stderr
    assert "[2/4] toy mae" in proc.stdout and "[3/4] toy scratch" in proc.stdout
    assert sorted(json.loads(baseline.read_text())) == ["toy/mae/vit_tiny_patch16/mean_color",
                                                        "toy/scratch/vit_tiny_patch16/mean_color"]
    table = (tmp_path / "suite" / "tables" / "toy.md").read_text()
    assert "## toy on toy val: mean_color by init and architecture" in table
    assert "| MAE | measured | toy/val · 8 img · full |" in table and "| scratch | measured |" in table
    mae = read_result(tmp_path / "suite" / "runs" / "toy" / "mae")
    assert mae["init"]["sha256"] and mae["recipe"]["runtime"]["seed"] == 0


def test_register_task_checks_its_facts(monkeypatch):
    monkeypatch.setattr("benchmarks.tasks.TASKS", dict(TASKS))
    from benchmarks import tasks

    def runner(cfg, **kw):
        return {}
    assert register_task("extra", data="coco", metrics=("AP",), eval_data="COCO val2017")(runner) is runner
    task = tasks.TASKS["extra"]
    assert (task.recipes, task.table, task.table_metrics) == ("extra", "extra", ("AP",)) and task.load_runner()({}) == {}
    with pytest.raises(ValueError, match="registered already"):
        register_task("extra", runner, data="coco", metrics=("AP",), eval_data="COCO val2017")
    with pytest.raises(ValueError, match="data 'cityscapes'"):
        Task("city", runner, data="cityscapes", metrics=("mIoU",), eval_data="Cityscapes val")
    with pytest.raises(ValueError, match="unknown options"):
        Task("city", runner, data="ade20k", metrics=("mIoU",), eval_data="ADE20K val", options=("fast",))


BROKEN_PLUGINS = {  # module text -> a phrase of the one line that names it
    "raises": ("raise RuntimeError('plugin failed at import')\n", "plugin failed at import"),
    "syntax": ("def broken(:\n", "SyntaxError"),
    "twice": ("from benchmarks.tasks import register_task\nregister_task('knn', lambda cfg, **kw: None)\n",
              "registered already"),
    "absent": (None, "No module named"),
}


@pytest.mark.parametrize("kind", list(BROKEN_PLUGINS))
def test_a_broken_task_module_is_one_line_and_help_still_works(kind, tmp_path):
    text, phrase = BROKEN_PLUGINS[kind]
    name = f"broken_{kind}"
    if text is not None:
        (tmp_path / f"{name}.py").write_text(text)
    env = {**os.environ, "MAE_BENCH_TASKS": name, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "benchmarks.cli", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    helped = run("--help")
    assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr
    assert helped.stderr.count("mae-bench: warning:") == 1 and f"'{name}'" in helped.stderr and phrase in helped.stderr
    ran = run("tables", "--results", str(tmp_path), "--out", str(tmp_path / "tables"))
    errors = [line for line in ran.stderr.splitlines() if line.startswith("mae-bench: error:")]
    assert ran.returncode == 1 and len(errors) == 1 and f"'{name}'" in errors[0] and phrase in errors[0], ran.stderr
    assert "Traceback" not in ran.stderr and not (tmp_path / "tables").exists()
