"""coco_det end to end on the synthetic scenes: results anyone can re-score, eval-only, resume, learning."""
import contextlib
import io
import json
import shutil

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks.cli import main
from mae_core.checkpoint import read_checkpoint
from results.record import read_result

# seconds per epoch on 2 cores: ViT-Tiny at 64 px (a 4 x 4 grid), slim heads
TINY = ["model.img_size=64", "model.pretrain_img_size=32", "model.window_size=2", "model.fpn_channels=32",
        "model.anchor_sizes=(8, 16, 32, 64, 128)", "data.scale_range=(0.5, 1.5)",
        "model.head_channels=32", "model.box_fc=64", "model.box_convs=1", "model.mask_convs=1",
        "model.roi_batch_per_image=32", "data.subset=None", "data.val_subset=None", "schedule.batch_size=4",
        "schedule.eval_batch_size=8", "schedule.warmup_iters=2", "runtime.device=cpu", "runtime.log_every=1",
        "runtime.save_every=1", "runtime.keep_last=2", "runtime.eval_every=1", "model.score_thresh=0.0"]


def det_args(data, out, epochs=1, ckpt="scratch", extra=()):
    sets = [a for s in [*TINY, f"schedule.epochs={epochs}", *extra] for a in ("--set", s)]
    return ["run", "--task", "coco_det", "--recipe", "smoke", "--ckpt", ckpt, "--arch", "vit_tiny_patch16",
            "--data", str(data), "--out", str(out), *sets]


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "run"
    assert main(det_args(synth_root, out, epochs=2)) == 0
    return out


def test_run_writes_a_record_and_results_anyone_can_rescore(trained, synth_root):
    rec = read_result(trained)
    assert rec["task"] == "coco_det" and rec["init"]["kind"] == "scratch" and rec["arch"] == "vit_tiny_patch16"
    m = rec["metrics"]
    assert {f"{t}_{k}" for t in ("bbox", "segm") for k in ("AP", "AP50", "AP75", "APs")} <= set(m)
    results = json.loads((trained / "coco_instances_results.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(results[0])
    assert isinstance(results[0]["segmentation"]["counts"], str) and len(results[0]["bbox"]) == 4
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools alone, as a user would
        gt = COCO(str(synth_root / "coco" / "annotations" / "instances_val2017.json"))
        for iou in ("bbox", "segm"):
            ev = COCOeval(gt, gt.loadRes(str(trained / "coco_instances_results.json")), iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert m[f"{iou}_AP"] == pytest.approx(ev.stats[0] * 100, abs=1e-9)
            assert m[f"{iou}_AP50"] == pytest.approx(ev.stats[1] * 100, abs=1e-9)
    ckpt = read_checkpoint(trained / "model_final.pth")
    assert ckpt["config"]["task"] == "coco_det" and any(k.startswith("backbone.net.blocks.") for k in ckpt["model"])


def test_eval_only_reproduces_the_trained_numbers(trained, synth_root, tmp_path):
    out = tmp_path / "eval"
    assert main([*det_args(synth_root, out, extra=["model.window_size=4"]), "--eval-only",
                 "--weights", str(trained / "model_final.pth")]) == 0  # the model section comes from the weights
    assert read_result(out)["metrics"] == read_result(trained)["metrics"]
    assert (out / "coco_instances_results.json").read_bytes() == (trained / "coco_instances_results.json").read_bytes()
    assert main([*det_args(synth_root, out), "--weights", str(trained / "model_final.pth")]) == 1  # needs --eval-only


def test_detection_run_resumes_exactly(trained, synth_root, tmp_path):
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(trained / "checkpoint-0.pth", part / "checkpoint-last.pth")  # as if stopped after epoch 0
    assert main([*det_args(synth_root, part, epochs=2), "--resume", "auto"]) == 0
    a, b = read_checkpoint(trained / "model_final.pth")["model"], read_checkpoint(part / "model_final.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_result(part)["metrics"] == read_result(trained)["metrics"]


def test_bad_input_is_one_line_error(synth_root, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(synth_root / "coco", bad / "coco")
    (bad / "coco" / "annotations" / "instances_val2017.json").write_text("{oops")
    assert main(det_args(bad, tmp_path / "r")) == 1
    assert "cannot read COCO annotations" in capsys.readouterr().err
    assert main(det_args(tmp_path / "nowhere", tmp_path / "r")) == 1


def test_training_raises_ap_far_above_an_untrained_model(tmp_path):
    """A hundred updates on 8 scenes (scored on the same scenes) against the same detector untrained."""
    from benchmarks.config import load_recipe, resolved
    from transfer.synth import generate
    from mae_core.checkpoint import save_checkpoint
    from transfer.detection.model import detector_from_init
    data = tmp_path / "synth64"
    generate(data, n_train=8, n_val=8, img_size=64, seed=1, progress=False)
    extra = ["data.val_split=train2017", "schedule.epochs=50", "optim.lr=3e-4", "optim.lr_batch=4",
             "data.scale_range=(1.0, 1.0)", "model.drop_path=0.0", "model.score_thresh=0.05",
             "runtime.eval_every=100", "runtime.save_every=100", "runtime.log_every=10"]
    assert main(det_args(data, tmp_path / "trained", extra=extra)) == 0
    cfg = resolved(load_recipe("coco_det", "smoke", [*TINY, *extra]))
    torch.manual_seed(0)
    model, _ = detector_from_init(cfg["model"], "scratch", "vit_tiny_patch16", 8)
    save_checkpoint(tmp_path / "untrained.pth", model.state_dict(), config={"task": "coco_det", "recipe": cfg})
    assert main([*det_args(data, tmp_path / "untrained", extra=extra), "--eval-only",
                 "--weights", str(tmp_path / "untrained.pth")]) == 0
    trained, untrained = read_result(tmp_path / "trained")["metrics"], read_result(tmp_path / "untrained")["metrics"]
    assert untrained["bbox_AP"] < 2 and untrained["segm_AP"] < 2
    assert trained["bbox_AP"] > untrained["bbox_AP"] + 10
    assert trained["segm_AP"] > untrained["segm_AP"] + 5


def test_written_detections_and_coco_eval_json_rescore_to_the_record(trained):
    """What `mae-bench compare` re-scores: the detections and coco_eval.json (annotation file, evaluated ids)."""
    from results.compare import load_run
    rec = read_result(trained)
    meta = json.loads((trained / "coco_eval.json").read_text())
    assert len(meta["image_ids"]) == rec["dataset"]["val_images"]
    run = load_run(trained)
    for metric in ("bbox_AP", "segm_AP"):
        assert run.scorers[metric].full() == rec["metrics"][metric]  # pycocotools on the same images, bit for bit
