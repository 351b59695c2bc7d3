"""`mae-bench compare` end to end on tiny runs: the per-image evidence each run writes reproduces its own metric,
the paired numbers agree with an independent count, and runs on other images are refused in one line."""
import csv
import json
import shutil

import numpy as np
import pytest

from benchmarks.cli import main
from results.compare import load_run
from results.evidence import read_predictions, read_seg_counts
from results.record import make_record, read_result, write_result

from .test_classification import run_args as cls_args
from .test_segmentation import TINY as SEG_TINY


@pytest.fixture(scope="module")
def cls_runs(synth_root, mae_ckpt, tmp_path_factory):
    """Linear probes of the tiny MAE (cached features) and of a scratch encoder (images), 1 epoch each, and k-NN."""
    root = tmp_path_factory.mktemp("cmp")
    assert main(cls_args("in1k_linear", mae_ckpt, synth_root, root / "mae", epochs=1,
                         extra=["runtime.cache_features=True", "data.augment='none'"])) == 0
    assert main(cls_args("in1k_linear", "scratch", synth_root, root / "scratch", epochs=1,
                         extra=["runtime.cache_features=False"], arch="vit_tiny_patch16")) == 0
    assert main(["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(mae_ckpt), "--data", str(synth_root),
                 "--out", str(root / "knn"), "--set", "model.img_size=32", "--set", "schedule.batch_size=8",
                 "--set", "runtime.device='cpu'"]) == 0
    return root


def test_predictions_name_every_val_image_and_reproduce_top1(cls_runs, synth_root):
    val = synth_root / "imagenet" / "val"
    files = sorted(p.relative_to(val).as_posix() for p in val.rglob("*") if p.is_file())
    for name in ("mae", "scratch", "knn"):
        rec = read_result(cls_runs / name)
        ids, labels, top5 = read_predictions(cls_runs / name)
        assert ids == files  # image id: the path under the split folder
        classes = sorted(p.name for p in val.iterdir())
        assert [classes[y] for y in labels] == [f.split("/")[0] for f in ids]
        assert 100.0 * float((top5[:, 0] == labels).sum()) / len(ids) == rec["metrics"]["top1"]  # bit for bit
        assert 100.0 * float((top5 == labels[:, None]).any(1).sum()) / len(ids) == rec["metrics"]["top5"]
        load_run(cls_runs / name)  # the loader's own check agrees


def test_compare_prints_the_paired_numbers_and_mcnemar(cls_runs, capsys):
    a, b = cls_runs / "mae", cls_runs / "scratch"
    assert main(["compare", str(a), str(b), "--json", "--resamples", "500"]) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    ra, rb = read_result(a)["metrics"], read_result(b)["metrics"]
    top1 = rows["top1"]
    assert (top1["a"], top1["b"]) == (ra["top1"], rb["top1"]) and top1["diff"] == pytest.approx(ra["top1"] - rb["top1"])
    assert top1["low"] <= top1["high"] and top1["resamples"] == 500 and top1["images"] == 8
    _, la, pa = read_predictions(a)
    _, lb, pb = read_predictions(b)
    ok_a, ok_b = pa[:, 0] == la, pb[:, 0] == lb
    assert (top1["mcnemar"]["only_a"], top1["mcnemar"]["only_b"]) == (int((ok_a & ~ok_b).sum()),
                                                                         int((~ok_a & ok_b).sum()))
    assert "top5" in rows and "mcnemar" not in rows["top5"]
    assert main(["compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "top-1" in text and "McNemar" in text and "95% interval" in text


def test_compare_refuses_other_images_or_tasks_in_one_line(cls_runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(cls_runs / "mae", other)
    rows = list(csv.reader(open(other / "predictions.csv")))
    rows[1][0] = "elsewhere/x.png"
    with open(other / "predictions.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    assert main(["compare", str(cls_runs / "mae"), str(other)]) == 1
    err = capsys.readouterr().err.strip()
    assert "different evaluation images" in err and len(err.splitlines()) == 1
    assert main(["compare", f"{cls_runs / 'mae'},{cls_runs / 'knn'}", str(cls_runs / "scratch")]) == 1
    assert "the runs of one side must be seeds of one setting" in capsys.readouterr().err
    # two protocols on one evaluation set are comparable: the linear probe against k-NN of the same encoder
    assert main(["compare", str(cls_runs / "mae"), str(cls_runs / "knn"), "--resamples", "50"]) == 0
    assert capsys.readouterr().out.startswith("in1k_linear vs knn on 8 images")


def test_seed_group_side(cls_runs, tmp_path, capsys):
    """A folder of several runs is a seed group: the A value is the mean of its runs' metrics."""
    group = tmp_path / "group"
    for i, name in enumerate(("mae", "scratch")):
        shutil.copytree(cls_runs / name, group / f"seed_{i}")
    assert main(["compare", str(group), str(cls_runs / "scratch"), "--json", "--resamples", "200"]) == 0
    top1 = json.loads(capsys.readouterr().out)[0]
    want = (read_result(cls_runs / "mae")["metrics"]["top1"] + read_result(cls_runs / "scratch")["metrics"]["top1"]) / 2
    assert top1["a"] == pytest.approx(want) and top1["runs_a"] == 2 and "mcnemar" not in top1


def seg_run(data, out, seed):
    sets = [*SEG_TINY, "schedule.iters=2", "schedule.eval_interval=2", "model.img_size=32", "data.scale=(128,32)",
            "data.test_scale=(128,32)", f"runtime.seed={seed}"]
    return main(["run", "--task", "ade20k_seg", "--ckpt", "scratch", "--arch", "vit_tiny_patch16", "--data", str(data),
                 "--out", str(out), "--recipe", "smoke", *[a for s in sets for a in ("--set", s)]])


def test_segmentation_counts_sum_to_the_runs_metrics_and_compare(synth_root, cls_runs, tmp_path, capsys):
    for seed in (0, 1):
        assert seg_run(synth_root, tmp_path / f"s{seed}", seed) == 0
    rec = read_result(tmp_path / "s0")
    ids, counts = read_seg_counts(tmp_path / "s0", rec["dataset"]["num_classes"])
    assert len(ids) == rec["dataset"]["val_images"]
    # the summed per-image areas are the confusion matrix's diagonal, column and row sums: the run's numbers,
    # bit for bit (mmsegmentation's IoU = I / (P + L - I), Acc = I / L, aAcc = sum I / sum L)
    tp, pred, gt = counts.sum(0).T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        assert 100.0 * float(np.nanmean(tp / (gt + pred - tp))) == rec["metrics"]["mIoU"]
        assert 100.0 * float(np.nanmean(tp / gt)) == rec["metrics"]["mAcc"]
    assert float(100.0 * tp.sum() / gt.sum()) == rec["metrics"]["aAcc"]
    assert load_run(tmp_path / "s0").scorers["mIoU"].full() == rec["metrics"]["mIoU"]  # bit for bit
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "s0"), str(tmp_path / "s1"), "--json", "--resamples", "200"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["metric"] == "mIoU" and row["low"] <= row["high"]
    assert main(["compare", str(tmp_path / "s0"), str(cls_runs / "mae")]) == 1
    assert "compare runs of one kind of task" in capsys.readouterr().err


def test_detection_compare_on_written_detections(synth_root, tmp_path, capsys):
    """Hand-written detection runs: the ground truth itself (AP 100) against the boxes shifted by a few pixels."""
    from results.coco_file import load_coco
    from transfer.detection.evaluate import coco_eval
    ann = synth_root / "coco" / "annotations" / "instances_val2017.json"
    gt = load_coco(ann)
    ids = sorted(gt.imgs)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt.dataset["annotations"] if not a.get("iscrowd")]
    shifted = [{**d, "bbox": [d["bbox"][0] + 3, d["bbox"][1] + 2, *d["bbox"][2:]]} for d in perfect]
    for name, dets in (("perfect", perfect), ("shifted", shifted)):
        out = tmp_path / name
        out.mkdir()
        (out / "coco_instances_results.json").write_text(json.dumps(dets))
        (out / "coco_eval.json").write_text(json.dumps({"annotation_file": str(ann), "image_ids": ids}))
        metrics = coco_eval(gt, dets, ids, ("bbox",))
        write_result(out, make_record(task="coco_det", protocol="coco_det", arch="vit_tiny_patch16",
                                      init={"kind": "scratch", "ckpt": None, "sha256": None},
                                      dataset={"name": "synth", "root": str(synth_root), "split": "val2017"},
                                      metrics=metrics, recipe={}, started="", finished="", wall_s=0.0))
    assert main(["compare", str(tmp_path / "perfect"), str(tmp_path / "shifted"), "--json", "--resamples", "100"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["metric"] == "bbox_AP" and row["a"] == pytest.approx(100.0)
    assert row["diff"] > 0 and row["low"] <= row["diff"] <= row["high"]


def test_tables_baseline_marks_each_row_with_its_paired_interval(cls_runs, tmp_path, capsys):
    import pandas as pd
    results = tmp_path / "results"
    shutil.copytree(cls_runs / "scratch", results / "scratch")
    for seed in (0, 1):  # a seed group of two (identical) MAE runs: mean ± std (n=2) and its t interval
        shutil.copytree(cls_runs / "mae", results / "mae" / f"seed_{seed}")
    assert main(["tables", "--results", str(results), "--out", str(tmp_path / "t"), "--set", "plots=False",
                 "--set", "show_reference=False", "--baseline", "in1k:scratch", "--ci", "--resamples", "300"]) == 0
    md = (tmp_path / "t" / "in1k.md").read_text()
    assert "(baseline)" in md and "Δ " in md and "(n=2) [" in md
    cells = pd.read_csv(tmp_path / "t" / "in1k.csv")
    mae = cells[cells["method"] == "MAE"].iloc[0]
    ra, rb = read_result(cls_runs / "mae")["metrics"]["top1"], read_result(cls_runs / "scratch")["metrics"]["top1"]
    assert mae["diff"] == pytest.approx(ra - rb) and mae["diff_low"] <= mae["diff_high"]
    assert mae["ci_low"] == pytest.approx(ra) and mae["ci_high"] == pytest.approx(ra)  # std 0: a zero-width interval
    capsys.readouterr()
    assert main(["tables", "--results", str(results), "--out", str(tmp_path / "u"), "--set", "plots=False",
                 "--baseline", "in1k:nothing"]) == 1
    assert "no measured row 'nothing'" in capsys.readouterr().err


def test_run_seeds_writes_one_replicate_per_seed(cls_runs, synth_root, mae_ckpt, tmp_path, capsys):
    out = tmp_path / "group"
    argv = cls_args("in1k_linear", mae_ckpt, synth_root, out, epochs=1,
                    extra=["runtime.cache_features=True", "data.augment='none'"])
    assert main([*argv, "--seeds", "0,3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed_0", "seed_3"]
    for seed in (0, 3):
        assert read_result(out / f"seed_{seed}")["recipe"]["runtime"]["seed"] == seed
    # seed 0 is the plain run (runtime.seed defaults to 0), bit for bit
    assert (out / "seed_0" / "predictions.csv").read_bytes() == (cls_runs / "mae" / "predictions.csv").read_bytes()
    assert read_result(out / "seed_0")["metrics"] == read_result(cls_runs / "mae")["metrics"]
    capsys.readouterr()
    assert main(["compare", str(out), str(cls_runs / "scratch"), "--json", "--resamples", "100"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["runs_a"] == 2
    assert main([*argv, "--seeds", "0,0"]) == 1
    assert "--seeds takes distinct" in capsys.readouterr().err


def two_rank_eval(rank, port, logits, labels, out):
    """One of two gloo processes: its share of the validation set (rank, rank + 2, ...) through evaluate_classifier."""
    import torch
    import torch.distributed as tdist
    from mae_core.distributed import DistInfo
    from transfer.classification.evaluate import evaluate_classifier
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        mine = list(range(rank, len(labels), 2))
        batches = [(logits[mine[i:i + 2]], labels[mine[i:i + 2]], torch.tensor(mine[i:i + 2]))
                   for i in range(0, len(mine), 2)]
        res = evaluate_classifier(lambda b: b, batches, DistInfo(rank, 2), keep=True)
        if rank == 0:
            torch.save({"rows": res["rows"], "top1": res["top1"]}, out)
    finally:
        tdist.destroy_process_group()


def test_ddp_evaluation_gathers_every_images_predictions_once(tmp_path):
    import socket
    import torch
    import torch.multiprocessing as mp
    from mae_core.distributed import DistInfo
    from transfer.classification.evaluate import evaluate_classifier

    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(7, 6, generator=g), torch.randint(0, 6, (7,), generator=g)  # 4 + 3 images
    one = evaluate_classifier(lambda b: b, [(logits, labels, torch.arange(7))], DistInfo(), keep=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # spawn, not fork: a child forked after the parent's OpenMP pool has run can deadlock in its first parallel op
    mp.start_processes(two_rank_eval, args=(port, logits, labels, str(tmp_path / "rows.pt")), nprocs=2,
                       start_method="spawn")
    two = torch.load(tmp_path / "rows.pt", weights_only=True)
    rows = two["rows"][two["rows"][:, 0].argsort()]
    assert torch.equal(rows, one["rows"]) and two["top1"] == one["top1"]
    assert torch.equal(one["rows"][:, 2], logits.argmax(1)) and torch.equal(one["rows"][:, 1], labels)



def test_suite_seeds_runs_one_suite_per_seed_and_points_to_the_seed_table(synth_root, tmp_path, capsys):
    out = tmp_path / "suite"
    argv = ["suite", "--name", "tiny", "--data-root", str(synth_root), "--out", str(out),
            "--set", "tasks=['knn']", "--set", "inits=['mae', 'scratch']"]
    assert main([*argv, "--seeds", "0,1"]) == 0
    recs = [read_result(out / f"seed_{seed}" / "runs" / "knn" / "mae") for seed in (0, 1)]
    assert [r["recipe"]["runtime"]["seed"] for r in recs] == [0, 1]
    assert recs[0]["init"]["sha256"] != recs[1]["init"]["sha256"]  # each seed pretrained its own MAE
    from tools.seed_table import markdown, seed_rows  # the seed table the suite's last line points to
    table = markdown(seed_rows([out / f"seed_{s}" / "runs" for s in (0, 1)]))
    assert "(n=2)" in table and "knn" in table and "tools.seed_table" in capsys.readouterr().out
    capsys.readouterr()
    mae = ",".join(str(out / f"seed_{s}" / "runs" / "knn" / "mae") for s in (0, 1))
    scratch = ",".join(str(out / f"seed_{s}" / "runs" / "knn" / "scratch") for s in (0, 1))
    assert main(["compare", mae, scratch, "--json", "--resamples", "100"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["runs_a"] == row["runs_b"] == 2
    assert main([*argv, "--seeds", "0,1", "--update-baseline"]) == 1
