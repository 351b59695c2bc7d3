"""Regression check against a baseline file: setting keys, tolerance, duplicates, missing settings, atomic writes."""
import json

import pytest

from benchmarks.tasks import primary_metrics
from results.record import ResultError
from results.regression import (Regression, find_regressions, load_baseline, make_baseline, measured_values,
                                setting_key, write_baseline)
from tests.test_tables import record


def test_setting_keys():
    assert setting_key("in1k_linear", "linear", "mae", "vit_tiny_patch16", "top1") == "in1k_linear/mae/vit_tiny_patch16/top1"
    assert setting_key("in1k_partial", "partial", "mae", "vit_tiny_patch16", "top1", 4, "all") == \
        "in1k_partial/blocks=4/mae/vit_tiny_patch16/top1"
    assert setting_key("in1k_partial", "partial", "mae", "vit_tiny_patch16", "top1", 1, "mlp") == \
        "in1k_partial/blocks=1-mlp/mae/vit_tiny_patch16/top1"
    assert setting_key("coco_det", "coco_det", "scratch", "vit_base_patch16", "bbox_AP") == \
        "coco_det/scratch/vit_base_patch16/bbox_AP"
    assert setting_key("in1k_finetune", "supervised", "scratch", "vit_base_patch16", "top1") == \
        "in1k_finetune/protocol=supervised/scratch/vit_base_patch16/top1"


def _runs():
    return [record("in1k_linear", "mae", {"top1": 40.0, "top5": 80.0}),
            record("in1k_linear", "mae", {"top1": 44.0, "top5": 84.0}),  # duplicate: mean 42.0
            record("in1k_finetune", "scratch", {"top1": 30.0, "top5": 70.0}),
            record("in1k_partial", "mae", {"top1": 35.0}, blocks=2)]


BASE = {"_about": "checked-in CI baseline",
        "in1k_linear/mae/vit_tiny_patch16/top1": {"metric": "top1", "value": 45.0, "tolerance": 3.0},  # 42 = edge
        "in1k_finetune/scratch/vit_tiny_patch16/top1": {"metric": "top1", "value": 33.0, "tolerance": 2.5},
        "in1k_partial/blocks=2/mae/vit_tiny_patch16/top1": {"metric": "top1", "value": 36.0, "tolerance": 0.5},
        "in1k_linear/mae/vit_tiny_patch16/top5": {"metric": "top5", "value": 80.0, "tolerance": 1.0}}


def test_regressions_beyond_tolerance_are_named():
    regs = find_regressions(_runs(), BASE)
    assert regs == [Regression("in1k_finetune/scratch/vit_tiny_patch16/top1", "top1", 30.0, 33.0, 2.5),
                    Regression("in1k_partial/blocks=2/mae/vit_tiny_patch16/top1", "top1", 35.0, 36.0, 0.5)]
    text = "\n".join(f"regression: {r}" for r in regs)  # how the CLI shows each
    assert text.splitlines() == [
        "regression: in1k_finetune/scratch/vit_tiny_patch16/top1: top1 30.00 < baseline 33.00 - tolerance 2.50",
        "regression: in1k_partial/blocks=2/mae/vit_tiny_patch16/top1: top1 35.00 < baseline 36.00 - tolerance 0.50"]
    # one more point down on the duplicated linear probe (mean 41.5 < 45 - 3) and it regresses too
    runs = _runs()
    runs[1]["metrics"]["top1"] = 43.0
    assert [r.setting for r in find_regressions(runs, BASE)][0] == "in1k_finetune/scratch/vit_tiny_patch16/top1"
    assert "in1k_linear/mae/vit_tiny_patch16/top1" in {r.setting for r in find_regressions(runs, BASE)}
    assert find_regressions(runs, BASE)[1].value == pytest.approx(41.5)


def test_missing_settings_and_lower_is_better():
    base = {"coco_det/mae/vit_tiny_patch16/bbox_AP": {"metric": "bbox_AP", "value": 10.0, "tolerance": 1.0},
            "in1k_linear/mae/vit_tiny_patch16/top5": {"metric": "top5", "value": 80.0, "tolerance": 1.0,
                                                      "higher_is_better": False}}
    regs = find_regressions(_runs(), base)
    assert [str(r) for r in regs] == [
        "coco_det/mae/vit_tiny_patch16/bbox_AP: no result for bbox_AP (baseline 10.00)",
        "in1k_linear/mae/vit_tiny_patch16/top5: top5 82.00 > baseline 80.00 + tolerance 1.00"]
    assert [r.setting for r in find_regressions(_runs(), base, missing_ok=True)] == [
        "in1k_linear/mae/vit_tiny_patch16/top5"]


def test_write_baseline_round_trip(tmp_path):
    path = tmp_path / "baselines" / "ci.json"
    write_baseline(_runs(), path, tolerance={"top1": 2.0}, metrics=primary_metrics())
    base = load_baseline(path)
    assert base == {
        "in1k_finetune/scratch/vit_tiny_patch16/top1": {"metric": "top1", "value": 30.0, "tolerance": 2.0, "runs": 1,
                                                        "data": "synthetic-imagenet/val · 400 img · full"},
        "in1k_linear/mae/vit_tiny_patch16/top1": {"metric": "top1", "value": 42.0, "tolerance": 2.0, "runs": 2,
                                                  "data": "synthetic-imagenet/val · 400 img · full"},
        "in1k_partial/blocks=2/mae/vit_tiny_patch16/top1": {"metric": "top1", "value": 35.0, "tolerance": 2.0,
                                                            "runs": 1, "data": "synthetic-imagenet/val · 400 img · full"}}
    assert [p.name for p in path.parent.iterdir()] == ["ci.json"]  # atomic: no temp file left
    assert find_regressions(_runs(), path) == []
    worse = _runs()
    worse[2]["metrics"]["top1"] = 27.5
    assert [r.setting for r in find_regressions(worse, path)] == ["in1k_finetune/scratch/vit_tiny_patch16/top1"]
    assert set(make_baseline(_runs(), 1.0, metrics=None)) >= {"in1k_linear/mae/vit_tiny_patch16/top5"}
    assert measured_values([]).empty
    with pytest.raises(ResultError, match="no measured metrics"):
        write_baseline([], tmp_path / "empty.json", 1.0, primary_metrics())


@pytest.mark.parametrize("content, message", [
    ("{oops", "cannot read baseline file"),
    (json.dumps([1, 2]), "not a JSON object"),
    (json.dumps({"in1k_linear/mae/vit_tiny_patch16/top1": {"metric": "top1", "value": "high", "tolerance": 1}}),
     "finite numbers"),
    (json.dumps({"in1k_linear/mae/vit_tiny_patch16/top1": {"metric": "top5", "value": 1, "tolerance": 1}}),
     "last part must be its metric"),
])
def test_malformed_baselines_are_refused(tmp_path, content, message):
    path = tmp_path / "ci.json"
    path.write_text(content)
    with pytest.raises(ResultError, match=message):
        find_regressions(_runs(), path)
    with pytest.raises(ResultError, match="baseline file not found"):
        load_baseline(tmp_path / "nope.json")


def test_tolerance_from_the_seed_spread():
    import statistics
    seeds = [41.0, 44.0, 45.5]
    runs = [record("in1k_linear", "mae", {"top1": v}) for v in seeds]
    base = make_baseline(runs, 0.5, metrics=primary_metrics(), sigmas=3.0)
    entry = base["in1k_linear/mae/vit_tiny_patch16/top1"]
    s = statistics.stdev(seeds)  # sample std, n - 1
    assert entry["std"] == pytest.approx(s, abs=1e-4) and entry["runs"] == 3
    assert entry["tolerance"] == pytest.approx(3.0 * s * (1 + 1 / 3) ** 0.5, abs=1e-4)
    assert entry["value"] == pytest.approx(sum(seeds) / 3, abs=1e-4)
    flat = make_baseline([record("in1k_linear", "mae", {"top1": 40.0})] * 2, 0.5, primary_metrics(), sigmas=3.0)
    assert flat["in1k_linear/mae/vit_tiny_patch16/top1"]["tolerance"] == 0.5  # identical runs: the floor
    with pytest.raises(ResultError, match=">= 2 runs"):
        make_baseline(runs[:1], 0.5, primary_metrics(), sigmas=3.0)


def test_baseline_command_reads_seed_folders_and_refuses_bad_input(tmp_path, capsys):
    from benchmarks.cli import main
    from results.record import write_result
    for seed, value in enumerate([41.0, 44.0, 45.5]):
        write_result(tmp_path / f"s{seed}" / "runs" / "in1k_linear" / "mae", record("in1k_linear", "mae", {"top1": value}))
    out = tmp_path / "ci.json"
    assert main(["baseline", *(str(tmp_path / f"s{i}") for i in range(3)), "--out", str(out), "--floor", "0.5"]) == 0
    entry = load_baseline(out)["in1k_linear/mae/vit_tiny_patch16/top1"]
    assert entry["runs"] == 3 and entry["tolerance"] == pytest.approx(3 * 2.29129 * (4 / 3) ** 0.5, abs=1e-3)
    assert main(["baseline", str(tmp_path / "s0"), "--out", str(tmp_path / "one.json")]) == 1  # one run: no spread
    assert main(["baseline", str(tmp_path / "nope"), "--out", str(tmp_path / "x.json")]) == 1
    assert main(["baseline", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "y.json"),
                 "--sigmas", "0"]) == 1
    err = capsys.readouterr().err
    assert "needs >= 2 runs" in err and "no such run folder" in err and "--sigmas must be > 0" in err
    assert "Traceback" not in err and not any((tmp_path / n).exists() for n in ("one.json", "x.json", "y.json"))


def test_seed_table_means_stds_and_the_standard_error_of_mae_minus_scratch(tmp_path):
    import math
    import statistics
    from tools.seed_table import markdown, seed_rows
    from results.record import write_result
    mae, scratch = [50.0, 54.0, 52.0], [20.0, 21.0, 25.0]
    for seed in range(3):
        for init, vals in (("mae", mae), ("scratch", scratch)):
            write_result(tmp_path / f"s{seed}" / init, record("in1k_finetune", init, {"top1": vals[seed], "top5": 90.0}))
    rows = seed_rows([tmp_path / f"s{s}" for s in range(3)])
    assert [(r["setting"], r["metric"]) for r in rows] == [("in1k_finetune", "top1")]  # primary metrics only
    assert rows[0]["mae"] == pytest.approx((52.0, statistics.stdev(mae), 3))
    se = math.sqrt(statistics.stdev(mae) ** 2 / 3 + statistics.stdev(scratch) ** 2 / 3)
    line = markdown(rows).splitlines()[-1]
    assert f"+{52.0 - 22.0:.1f} | {30.0 / se:.1f} |" in line and "52.0 ± 2.0 (n=3)" in line


def test_scope_baseline_keeps_the_tasks_and_inits_asked_for():
    from results.regression import key_task_init, scope_baseline
    base = {k: {"metric": k.rsplit("/", 1)[1], "value": 1.0, "tolerance": 1.0} for k in (
        "in1k_partial/blocks=1/mae/vit_micro_patch8/top1", "in1k_linear/supervised/vit_micro_patch8/top1",
        "coco_det/scratch/vit_micro_patch8/bbox_AP")}
    assert key_task_init("in1k_partial/blocks=1/mae/vit_micro_patch8/top1") == ("in1k_partial", "mae")
    assert list(scope_baseline(base, inits={"mae", "scratch"})) == [
        "in1k_partial/blocks=1/mae/vit_micro_patch8/top1", "coco_det/scratch/vit_micro_patch8/bbox_AP"]
    assert list(scope_baseline(base, tasks=["in1k_linear", "coco_det"], inits=["scratch"])) == [
        "coco_det/scratch/vit_micro_patch8/bbox_AP"]
    assert scope_baseline(base) == base


@pytest.mark.parametrize("content, message", [
    ("{}", "compares nothing"),
    (json.dumps({"_comment": "a baseline with no settings"}), "compares nothing"),
    (json.dumps({"in1k_linear/mae/vit_tiny_patch16/top1": {"metric": "top1", "value": 1.0, "tolerance": 1.0,
                                                           "higher_is_better": "no"}}), "higher_is_better must be"),
    ('{"in1k_linear/mae/vit_tiny_patch16/top1": {"metric": "top1", "value": 1.0, "tolerance": 1.0}, '
     '"in1k_linear/mae/vit_tiny_patch16/top1": {"metric": "top1", "value": 99.0, "tolerance": 1.0}}', "appears twice"),
    ('{"in1k_linear/mae/vit_tiny_patch16/top1": {"metric": "top1", "metric": "top5", "value": 1, "tolerance": 1}}',
     "appears twice"),
])
def test_baselines_that_compare_nothing_or_read_wrong_are_refused(tmp_path, content, message):
    path = tmp_path / "ci.json"
    path.write_text(content)
    with pytest.raises(ResultError, match=message):
        find_regressions(_runs(), path)


def test_a_baseline_scope_with_nothing_of_the_runs_or_an_unknown_task_is_refused():
    from results.regression import checked_scope
    entry = {"metric": "top1", "value": 1.0, "tolerance": 1.0}
    tasks = ["in1k_linear", "knn"]
    # a wrong-case task name would be skipped by the scope: it is named instead
    with pytest.raises(ResultError, match="unknown task 'IN1K_linear'"):
        checked_scope({"IN1K_linear/mae/vit_tiny_patch16/top1": entry}, tasks, ["mae"], tasks)
    with pytest.raises(ResultError, match="compares nothing"):  # only another init's settings
        checked_scope({"knn/supervised/vit_tiny_patch16/top1": entry}, tasks, ["mae", "scratch"], tasks)
    assert list(checked_scope({"knn/mae/vit_tiny_patch16/top1": entry, "knn/supervised/vit_tiny_patch16/top1": entry},
                              tasks, ["mae"], tasks)) == ["knn/mae/vit_tiny_patch16/top1"]
    # missing settings allowed: a baseline none of whose settings was measured compares nothing
    with pytest.raises(ResultError, match="compares nothing"):
        find_regressions(_runs(), {"knn/mae/vit_tiny_patch16/top1": entry}, missing_ok=True)
