"""The suite end to end at test scale: data -> pretraining -> baseline -> every task x init -> tables ->
regression check against a baseline file."""
import json
import shutil

import pytest

from benchmarks.cli import main
from results.record import read_result

TASKS = ["in1k_linear", "in1k_partial", "in1k_finetune", "knn", "coco_det", "ade20k_seg"]
INITS = ["mae", "supervised", "scratch"]


@pytest.fixture(scope="module")
def suite_run(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    baseline = out / "baseline.json"
    argv = ["suite", "--name", "tiny", "--data-root", str(synth_root), "--out", str(out / "run"),
            "--set", f"baseline={str(baseline)!r}"]
    assert main([*argv, "--update-baseline", "--tolerance", "1.0"]) == 0
    yield out, argv, baseline
    shutil.rmtree(out, ignore_errors=True)  # GBs of checkpoints: free them before the next module


def test_suite_runs_every_task_for_every_init_and_builds_tables(suite_run):
    out, _, baseline = suite_run
    for task in TASKS:
        for init in INITS:
            rec = read_result(out / "run" / "runs" / task / init)
            assert rec["task"] == task and rec["init"]["kind"] == init and rec["metrics"]
    assert read_result(out / "run" / "runs" / "in1k_linear" / "mae")["init"]["pretrain"]["epochs_done"] == 1
    tables = out / "run" / "tables"
    assert any(tables.glob("*.md")) and any(tables.glob("*.csv"))
    assert json.loads(baseline.read_text())  # one entry per measured metric


def test_suite_rerun_skips_finished_steps_and_passes_its_own_baseline(suite_run, capsys):
    _, argv, _ = suite_run
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "done already" in text and "no regressions" in text


def test_a_suite_with_fewer_inits_is_checked_on_those_only(suite_run, capsys):
    _, argv, baseline = suite_run  # the baseline also holds the supervised rows, which this run leaves out
    assert any("/supervised/" in k for k in json.loads(baseline.read_text()))
    assert main([*argv, "--set", "inits=['mae', 'scratch']"]) == 0
    assert "no regressions" in capsys.readouterr().out


def test_suite_names_each_regressed_metric_and_exits_non_zero(suite_run, capsys):
    out, argv, baseline = suite_run
    entries = json.loads(baseline.read_text())
    key = next(k for k in entries if "in1k_finetune" in k and "scratch" in k)
    raised = dict(entries)
    raised[key] = {**entries[key], "value": entries[key]["value"] + 50.0}
    worse = out / "raised.json"
    worse.write_text(json.dumps(raised))
    argv = [*argv[:-2], "--set", f"baseline={str(worse)!r}"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "in1k_finetune" in err and "scratch" in err and "1 metric(s) regressed" in err


def test_suite_missing_data_is_one_line_error(tmp_path, capsys):
    assert main(["suite", "--name", "tiny", "--data-root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mae-bench: error: suite: no imagenet data") and "\n" not in err
