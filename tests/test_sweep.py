"""`mae-bench sweep` at test scale: a two-value decoder-depth grid (tiny recipes) -> a result per cell -> Table 1(a)
with measured rows beside the paper's; re-runs skip finished cells; bad knobs fail before any work; the submitit
launch path (local executor, two gloo processes) produces the same cell."""
import os
import re
import shutil

import pandas as pd
import pytest
import torch

from benchmarks.cli import main
from benchmarks.config import RECIPE_ROOT, parse_overrides
from benchmarks.orchestration.launcher import Launcher, parse_minutes
from benchmarks.orchestration.sweep import hold_batch
from mae_core.errors import MaeBenchError
from results.record import read_result

from .conftest import TINY_PRETRAIN, tiny_pretrain_args

CLS = {"model.img_size": 32, "schedule.epochs": 1, "schedule.batch_size": 8, "schedule.warmup_epochs": 0,
       "runtime.device": "cpu"}
# The paper's Table 1(a) (decoder depth): fine-tune and linear-probe top-1 of ViT-L/16, p. 5.
PAPER_1A = {1: (84.8, 65.5), 2: (84.9, 70.0), 4: (84.9, 71.9), 8: (84.9, 73.5), 12: (84.4, 73.3)}


def tiny_sweep(tmp_path, extra: str = "") -> str:
    """A user-written sweep recipe: the built-in decoder-depth sweep, values 1 and 2, seconds per step."""
    pre = {**parse_overrides(TINY_PRETRAIN), "schedule.epochs": 1}
    pre.pop("model.decoder_depth")  # the knob
    path = tmp_path / "tiny_sweep.py"
    path.write_text(f"_base_ = [{str(RECIPE_ROOT / 'sweep' / 'decoder_depth.py')!r}]\n"
                    f"values = [1, 2]\n"
                    f"scales = dict(smoke=dict(pretrain=dict(sets={pre!r}), in1k_finetune=dict(sets={CLS!r}),\n"
                    f"                         in1k_linear=dict(sets={CLS!r})))\n{extra}")
    return str(path)


@pytest.fixture(scope="module")
def sweep_run(synth_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    argv = ["sweep", "--name", tiny_sweep(tmp), "--recipe", "smoke", "--data-root", str(synth_root),
            "--out", str(tmp / "run")]
    assert main(argv) == 0
    yield tmp / "run", argv
    shutil.rmtree(tmp, ignore_errors=True)  # free the cells' checkpoints before the next module


def test_sweep_runs_every_cell_and_builds_its_table_beside_the_paper(sweep_run):
    out, _ = sweep_run
    measured = {}
    for depth in (1, 2):
        for task in ("in1k_finetune", "in1k_linear"):
            rec = read_result(out / "cells" / f"decoder_depth={depth}" / "seed0" / task)
            assert rec["task"] == task and rec["init"]["kind"] == "mae"
            assert rec["init"]["pretrain"]["model"]["decoder_depth"] == depth  # the knob reached the pretraining
            measured[depth, task] = rec["metrics"]["top1"]
    table = pd.read_csv(out / "tables" / "table1_decoder_depth.csv")
    column = {"in1k_finetune": "fine-tune top-1", "in1k_linear": "linear probe top-1"}
    for (depth, task), top1 in measured.items():
        cell = table[(table["kind"] == "measured") & (table["setting"] == f"decoder depth {depth}")
                     & (table["column"] == column[task])]
        assert len(cell) == 1 and cell["value"].iloc[0] == pytest.approx(top1, abs=1e-6)
    for depth, (ft, lin) in PAPER_1A.items():
        ref = table[(table["kind"] == "reference") & table["setting"].str.fullmatch(rf"decoder depth {depth}( \(default\))?")]
        assert sorted(ref["value"]) == sorted([ft, lin])
    text = (out / "tables" / "table1_decoder_depth.md").read_text()
    assert "decoder depth 1" in text and "measured" in text and "84.8" in text
    assert "decoder_depth" in (out / "sweep.py").read_text()


def test_sweep_rerun_skips_finished_cells(sweep_run, capsys):
    out, argv = sweep_run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("result.json")}
    assert len(stamps) == 6  # per cell: its pretraining (a task too) and two protocols
    assert {p.parent.name for p in stamps} == {"pretrain", "in1k_finetune", "in1k_linear"}
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "2 cell(s), 2 done already" in text and "decoder_depth=1: done already" in text
    assert "pretrain ..." not in text and "in1k_linear ..." not in text
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("result.json")}


@pytest.mark.parametrize("sets, message", [
    (["knob='model.nope'"], "unknown recipe key 'model.nope'"),
    (["knob='model.mask_strategy'", "values=['random', 'spiral']"], "unknown mask strategy 'spiral'"),
    (["knob='model.mask_ratio'", "values=[0.5, 1.5]"], "model.mask_ratio=1.5 is invalid"),
    (["knob='data.augment'", "values=['rrc', 'mixup']"], "data.augment='mixup': choose one of"),
    (["knob='model.decoder_embed_dim'", "values=[64, 66]"], "cannot be built"),
    (["values=[]"], "`values` is empty"),
    (["values=[1, 1]"], "given twice"),
    (["tasks=['coco_det']"], "tasks must be some of"),
])
def test_sweep_bad_knob_or_value_is_one_line_error_before_any_work(synth_root, tmp_path, capsys, sets, message):
    out = tmp_path / "run"
    argv = ["sweep", "--name", tiny_sweep(tmp_path), "--recipe", "smoke", "--data-root", str(synth_root),
            "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mae-bench: error: sweep") and message in err and "\n" not in err
    assert not out.exists()


def test_sweep_unknown_scale_and_missing_data_are_one_line_errors(synth_root, tmp_path, capsys):
    assert main(["sweep", "--name", "decoder_depth", "--recipe", "huge", "--data-root", str(synth_root),
                 "--out", str(tmp_path / "o")]) == 1
    assert "sweep has no scale 'huge'; choose one of paper, subset, ci, smoke" in capsys.readouterr().err
    assert main(["sweep", "--name", "decoder_depth", "--data-root", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o")]) == 1
    assert "sweep: no imagenet data at" in capsys.readouterr().err


PAPER_GRIDS = {"decoder_depth": 5, "decoder_width": 5, "mask_token": 2, "target": 2, "augmentation": 4,
               "mask_sampling": 4, "mask_ratio": 10, "schedule": 5, "partial": 8}


@pytest.mark.parametrize("name, scale, cells", [*((n, "paper", c) for n, c in PAPER_GRIDS.items()),
                                                ("schedule", "smoke", 3), ("partial", "smoke", 6),
                                                *((n, "ci", c) for n, c in PAPER_GRIDS.items() if n not in
                                                  ("schedule", "partial")), ("schedule", "ci", 4), ("partial", "ci", 5)])
def test_every_builtin_sweep_plans_its_grid(name, scale, cells, tmp_path):
    from benchmarks.config import load_recipe
    from benchmarks.orchestration.sweep import plan

    phases = plan(load_recipe("sweep", name), scale, tmp_path, tmp_path / "out", world=8)
    assert len(phases[-1]) == cells
    assert len(phases) == (2 if name == "partial" else 1)  # Figure 9: one shared pretraining first
    for job in phases[-1]:
        argv = " ".join(s for step in job.steps for s in step.argv)
        for part in job.name.split(","):  # the cell's knob and value reach its steps
            key, value = part.split("=")
            assert re.search(rf"--set (\S+\.)?{key}='?{value}'?( |$)", argv)


def test_hold_batch_keeps_the_effective_batch_on_any_gpu_count():
    # paper pretraining, 4096 = 64 x 8 GPUs x accum 8 (official README) and 64 x 64 GPUs; fine-tuning 1024 on 64 GPUs
    assert hold_batch(4096, 64, 8) == (64, 8)
    assert hold_batch(4096, 64, 64) == (64, 1)
    assert hold_batch(4096, 64, 1) == (64, 64)
    assert hold_batch(1024, 32, 64) == (16, 1)
    assert hold_batch(16384, 512, 32) == (512, 1)
    for target, batch, world in [(4096, 64, 8), (1024, 32, 16), (16384, 512, 4), (4096, 48, 16)]:
        per, accum = hold_batch(target, batch, world)
        assert per * accum * world == target and per <= batch
    with pytest.raises(MaeBenchError, match="does not split over 48 processes"):
        hold_batch(4096, 64, 48)


def test_sweep_paper_scale_holds_4096_under_slurm_geometry(tmp_path):
    from benchmarks.config import load_recipe
    from benchmarks.orchestration.sweep import plan

    for world, accum, batch in [(8, 8, 64), (64, 1, 64)]:
        job = plan(load_recipe("sweep", "decoder_depth"), "paper", tmp_path, tmp_path / "o", world=world)[0][0]
        sets = parse_overrides([a for a, b in zip(job.steps[0].argv[1:], job.steps[0].argv) if b == "--set"])
        assert sets["schedule.accum_iter"] == accum and sets["schedule.batch_size"] == batch
        assert sets["schedule.batch_size"] * sets["schedule.accum_iter"] * world == 4096


def test_parse_minutes():
    assert parse_minutes("90") == 90 and parse_minutes("72:00:00") == 4320 and parse_minutes("1-02:30") == 1590
    with pytest.raises(MaeBenchError, match="--time expects"):
        parse_minutes("3 days")


def test_slurm_job_asks_for_nodes_times_gpus_tasks(tmp_path, monkeypatch):
    pytest.importorskip("submitit")  # the `slurm` extra (also in `dev`)
    with pytest.raises(MaeBenchError, match="no `srun` on PATH"):
        Launcher("slurm")
    srun = tmp_path / "bin" / "srun"  # submitit only looks for it
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{os.environ['PATH']}")
    ex = Launcher("slurm", nodes=8, gpus_per_node=8, partition="learnfair", account="mae", time_min=4320)\
        .executor(tmp_path)
    text = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--nodes=8", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=learnfair", "--account=mae",
                 "--time=4320", "--signal=USR2@120", "--cpus-per-task=10"):
        assert f"#SBATCH {line}" in text


def test_submitit_local_executor_runs_a_cell_as_two_gloo_processes(synth_root, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "run"
    argv = ["sweep", "--name", tiny_sweep(tmp_path, "tasks = ['in1k_linear']\n"), "--recipe", "smoke",
            "--data-root", str(synth_root), "--out", str(out), "--set", "values=[2]",
            "--launcher", "submitit-local", "--gpus-per-node", "2"]
    assert main(argv) == 0
    rec = read_result(out / "cells" / "decoder_depth=2" / "seed0" / "in1k_linear")
    assert rec["init"]["pretrain"]["model"]["decoder_depth"] == 2
    logs = "".join(p.read_text() for p in (out / "slurm").rglob("*_log.out"))
    assert "effective batch 16" in logs  # pretraining: 8 per process x 2 processes
    # DDP over the two ranks equals one process with the same global batch (16), as torchrun's would
    one = tmp_path / "one"
    assert main(tiny_pretrain_args(synth_root / "imagenet" / "train", one, epochs=1, extra=[
        "model.decoder_depth=2", "model.norm_pix_loss=False", "schedule.batch_size=16", "runtime.seed=0"])) == 0
    ddp = torch.load(out / "cells" / "decoder_depth=2" / "seed0" / "pretrain" / "checkpoint-last.pth",
                     weights_only=False)["model"]
    ref = torch.load(one / "checkpoint-last.pth", weights_only=False)["model"]
    assert ddp.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], atol=1e-5, rtol=1e-4)


def test_sweep_help(capsys):
    from benchmarks.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["sweep", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and "--launcher" in text and "--gpus-per-node" in text
