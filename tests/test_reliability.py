"""Bad input is refused before any work, one run owns a run folder, and faults leave nothing misleading behind."""
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.cli import main
from benchmarks.running.run_folder import LOCK, remove_stale_temps
from benchmarks.tasks import TASKS
from results.record import write_json_atomic
from tests.conftest import tiny_mae, tiny_pretrain_args

REPO = Path(__file__).resolve().parents[1]


# (name, argv builder(synth_root, out, tmp_path), a phrase the one error line must hold)
BAD_INPUTS = [
    ("mask ratio above 1", lambda d, o, t: tiny_pretrain_args(d, o, 1, ["model.mask_ratio=1.5"]), "mask_ratio=1.5"),
    ("mask ratio 1", lambda d, o, t: tiny_pretrain_args(d, o, 1, ["model.mask_ratio=1.0"]), "(0, 1)"),
    ("mask ratio 0", lambda d, o, t: tiny_pretrain_args(d, o, 1, ["model.mask_ratio=0.0"]), "(0, 1)"),
    ("negative mask ratio", lambda d, o, t: tiny_pretrain_args(d, o, 1, ["model.mask_ratio=-0.5"]), "mask_ratio"),
    ("zero pretraining epochs", lambda d, o, t: tiny_pretrain_args(d, o, 0), "schedule.epochs=0"),
    ("epochs not a number", lambda d, o, t: tiny_pretrain_args(d, o, 1, ["schedule.warmup_epochs='abc'"]), "it must be an integer >= 0"),
    ("fractional epochs", lambda d, o, t: tiny_pretrain_args(d, o, 1, ["schedule.warmup_epochs=2.5"]), "it must be an integer >= 0"),
    ("zero batch", lambda d, o, t: tiny_pretrain_args(d, o, 1, ["schedule.batch_size=0"]), "batch_size=0"),
    ("negative batch flag", lambda d, o, t: [*tiny_pretrain_args(d, o, 1), "--batch-size", "-4"], "batch_size=-4"),
    ("negative linear epochs", lambda d, o, t: ["run", "--task", "in1k_linear", "--ckpt", "scratch", "--arch",
                                                "vit_tiny_patch16", "--data", str(d), "--out", str(o), "--recipe",
                                                "smoke", "--set", "schedule.epochs=-1"], "schedule.epochs=-1"),
    ("zero fine-tune epochs", lambda d, o, t: ["run", "--task", "in1k_finetune", "--ckpt", "scratch", "--arch",
                                               "vit_tiny_patch16", "--data", str(d), "--out", str(o), "--recipe",
                                               "smoke", "--set", "schedule.epochs=0"], "schedule.epochs=0"),
    ("layer decay above 1", lambda d, o, t: ["run", "--task", "in1k_finetune", "--ckpt", "scratch", "--arch",
                                             "vit_tiny_patch16", "--data", str(d), "--out", str(o), "--recipe",
                                             "smoke", "--set", "optim.layer_decay=1.5"], "layer_decay"),
    ("tables decimals not a number", lambda d, o, t: ["tables", "--results", str(t), "--out", str(o),
                                                      "--set", "decimals='abc'"], "decimals"),
    ("huge synthetic images", lambda d, o, t: ["data", "synth", "--out", str(o), "--img-size", "1000000"], "img_size"),
    ("visualize mask ratio above 1", lambda d, o, t: ["visualize", "--ckpt", "x.pth", "--images", str(d),
                                                      "--out", str(o / "v.png"), "--mask-ratio", "1.5"], "mask_ratio"),
    ("--out is a file", lambda d, o, t: tiny_pretrain_args(d, t / "a-file", 1), "is a file"),
]


def _suite_with_baseline(d, o, t, content: str) -> list[str]:
    """The tiny suite checked against a baseline file holding `content` (written into the test's tmp folder)."""
    (t / "baseline.json").write_text(content)
    return ["suite", "--name", "tiny", "--data-root", str(d), "--out", str(o), "--set", f"baseline={t / 'baseline.json'}"]


_ENTRY = '{"metric": "top1", "value": 10.0, "tolerance": 1.0}'
BAD_INPUTS += [  # regression baselines that would compare nothing or read wrong: refused before the suite's steps
    ("empty baseline", lambda d, o, t: _suite_with_baseline(d, o, t, "{}"), "compares nothing"),
    ("comment-only baseline", lambda d, o, t: _suite_with_baseline(d, o, t, '{"_comment": "x"}'), "compares nothing"),
    ("baseline of another init", lambda d, o, t: _suite_with_baseline(
        d, o, t, '{"knn/dino/vit_micro_patch8/top1": %s}' % _ENTRY), "compares nothing"),
    ("wrong-case task in baseline", lambda d, o, t: _suite_with_baseline(
        d, o, t, '{"KNN/mae/vit_micro_patch8/top1": %s}' % _ENTRY), "unknown task 'KNN'"),
    ("higher_is_better a string", lambda d, o, t: _suite_with_baseline(
        d, o, t, '{"knn/mae/vit_micro_patch8/top1": %s}' % _ENTRY.replace("}", ', "higher_is_better": "no"}')),
     "higher_is_better must be"),
    ("duplicate baseline key", lambda d, o, t: _suite_with_baseline(
        d, o, t, '{"knn/mae/vit_micro_patch8/top1": %s, "knn/mae/vit_micro_patch8/top1": %s}' % (_ENTRY, _ENTRY)),
     "appears twice"),
]



def _knn(d, o, *extra) -> list[str]:
    return ["run", "--task", "knn", "--ckpt", "scratch", "--arch", "vit_tiny_patch16", "--data", str(d / "imagenet"),
            "--out", str(o), "--recipe", "smoke", "--set", "runtime.device=cpu", *extra]


def _truncated_ckpt(t: Path) -> str:
    """A tiny MAE checkpoint cut in half (an interrupted copy)."""
    from mae_core.checkpoint import save_checkpoint
    save_checkpoint(t / "whole.pth", tiny_mae(img_size=32).state_dict())
    data = (t / "whole.pth").read_bytes()
    (t / "cut.pth").write_bytes(data[:len(data) // 2])
    return str(t / "cut.pth")


BAD_INPUTS += [  # issue 23 item 13: cryptic errors or a recipe.py left behind
    ("out on a read-only path", lambda d, o, t: tiny_pretrain_args(d, Path("/sys/mae-bench-test-run"), 1),
     "cannot write the run folder"),
    ("pretrain on a CUDA device that is not there", lambda d, o, t: [*tiny_pretrain_args(d, o, 1), "--set",
                                                                     "runtime.device=cuda:99"], "runtime.device=cuda:99"),
    ("knn on a CUDA device that is not there", lambda d, o, t: _knn(d, o, "--set", "runtime.device=cuda:99"),
     "runtime.device=cuda:99"),
    ("a recipe section set to None", lambda d, o, t: _knn(d, o, "--set", "knn=None"), "knn is a section"),
    ("knn.k above the training set (found after the folder is claimed)",
     lambda d, o, t: _knn(d, o, "--set", "knn.k=1000"), "knn.k must be an integer in [1, 24]"),
    ("truncated checkpoint", lambda d, o, t: [*_knn(d, o)[:4], _truncated_ckpt(t), *_knn(d, o)[5:]], "truncated"),
]


@pytest.mark.parametrize("name,argv,phrase", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_before_any_work(name, argv, phrase, synth_root, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "run"
    code = main(argv(synth_root, out, tmp_path))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mae-bench: error:")]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert phrase in lines[0], lines[0]
    assert not out.exists(), "nothing may be written before the input is known to be good"


def test_mask_ratio_out_of_range_is_refused_by_the_model():
    model = tiny_mae(img_size=32)
    imgs = torch.randn(2, 3, 32, 32)
    for bad in (1.0, 1.5, -0.5):
        with pytest.raises(ValueError, match="mask_ratio"):
            model(imgs, mask_ratio=bad)
    _, _, mask = model(imgs, mask_ratio=0.5)
    assert mask.sum(1).tolist() == [2.0, 2.0]  # 4 patches, 2 masked


def test_a_second_run_on_a_locked_folder_is_refused(synth_root, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    # another process holds the folder: a child that takes the lock and waits
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'4242 otherhost'); print('locked', flush=True); time.sleep(60)"),
        str(out / LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(tiny_pretrain_args(synth_root, out, 1))
        err = capsys.readouterr().err
        assert code == 1 and "in use by another run" in err and "4242 otherhost" in err and "Traceback" not in err
        assert not (out / "recipe.py").exists() and not (out / "log.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the owner died: its lock goes with it, and the next run takes the folder over
    assert main(tiny_pretrain_args(synth_root, out, 1)) == 0
    assert (out / "checkpoint-last.pth").exists()
    fd = os.open(out / LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released at the end of the run
    os.close(fd)


def test_a_failed_rerun_with_other_settings_leaves_a_finished_run_untouched(synth_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_pretrain_args(synth_root, out, 1)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != LOCK}
    code = main(tiny_pretrain_args(synth_root, out, 1, ["model.mask_ratio=0.5"]))
    err = capsys.readouterr().err
    assert code == 1 and "made with another recipe" in err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != LOCK}
    assert after == before
    # the same settings continue the run
    assert main([*tiny_pretrain_args(synth_root, out, 1), "--resume", "auto"]) == 0


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".checkpoint-last.pth.abc123.tmp", tmp_path / "sub" / ".result.json.x1.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    keep = tmp_path / "checkpoint-last.pth"
    keep.write_bytes(b"ok")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert keep.exists() and not any(p.exists() for p in stale)


def test_result_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "result.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_sigterm_ends_the_run_like_ctrl_c(tmp_path):
    out = tmp_path / "synth"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "data", "synth", "--out", str(out),
                             "--train", "200000", "--val", "10", "--img-size", "32", "--quiet"],
                            cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not any(out.rglob("*.png")) and time.time() < deadline:  # wait until it is doing work
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err, err


def test_top_level_help_is_a_whole_sentence(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "then build the paper's tables from the result files." in " ".join(out.split())


def _record(**changes):
    from results.record import make_record
    rec = make_record(task="in1k_linear", protocol="linear", arch="vit_tiny_patch16",
                      init={"kind": "mae", "ckpt": "m.pth", "sha256": None}, dataset={"name": "synthetic-imagenet",
                      "split": "val", "val_images": 8}, metrics={"top1": 50.0}, recipe={}, started="s", finished="f",
                      wall_s=1.0, env={})
    for key, value in changes.items():
        node, *path = key.split(".")
        target = rec
        for part in [node, *path][:-1]:
            target = target[part]
        target[[node, *path][-1]] = value
    return rec


@pytest.mark.parametrize("change", [{"arch": ["vit"]}, {"blocks": "abc"}, {"dataset.val_images": "many"},
                                    {"metrics.top1": 1e308}, {"metrics.top1": -3.0}, {"init.pretrain": "x"}],
                         ids=["arch-list", "blocks-str", "images-str", "huge-metric", "negative-metric", "pretrain-str"])
def test_tables_skip_and_name_a_malformed_result_file(change, tmp_path, capsys):
    import json
    from results.tables import build_tables
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "good" / "result.json").write_text(json.dumps(_record()))
    (tmp_path / "bad" / "result.json").write_text(json.dumps(_record(**change)))
    build_tables(tmp_path, tmp_path / "out", TASKS.values(), plots=False, echo=False)
    err = capsys.readouterr().err
    assert "warning: skipping" in err and str(tmp_path / "bad" / "result.json") in err
    assert "1 result file from" in (tmp_path / "out" / "tables.md").read_text()


def test_strings_from_result_files_cannot_inject_markdown(tmp_path):
    import json
    from results.tables import build_tables
    (tmp_path / "r").mkdir()
    rec = _record(**{"arch": "vit\n## injected\n<script>x</script>", "dataset.name": "a|b\n| row |"})
    (tmp_path / "r" / "result.json").write_text(json.dumps(rec))
    build_tables(tmp_path, tmp_path / "out", TASKS.values(), plots=False, echo=False)
    text = (tmp_path / "out" / "tables.md").read_text()
    assert "<script>" not in text and "\n## injected" not in text and "\n| row |" not in text
    assert "&lt;script&gt;" in text


def _tiny_fs(tmp_path, size="256k"):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    return mnt


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temp(tmp_path):
    from mae_core.checkpoint import save_checkpoint
    from mae_core.errors import MaeBenchError
    mnt = _tiny_fs(tmp_path)
    try:
        with pytest.raises(MaeBenchError, match="no space left on device while writing .*checkpoint-last.pth"):
            save_checkpoint(mnt / "checkpoint-last.pth", {"w": torch.zeros(1 << 20)})  # 4 MiB into 256 KiB
        with pytest.raises(MaeBenchError, match="no space left on device while writing .*result.json"):
            write_json_atomic(mnt / "result.json", {"x": "y" * (1 << 20)})
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)])  # lazy: a failed torch.save may still hold its file


def test_visualize_into_a_folder_is_refused_without_leftovers(synth_root, mae_ckpt, tmp_path, capsys):
    target = tmp_path / "pics"
    target.mkdir()
    code = main(["visualize", "--ckpt", str(mae_ckpt), "--images", str(synth_root / "coco" / "val2017"),
                 "--out", str(target), "--num", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "is a folder" in err and "Traceback" not in err
    assert list(target.iterdir()) == [] and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("to", ["timm", "detectron2", "mmseg"])
def test_export_refuses_tensors_of_the_wrong_shape(to, tmp_path, capsys):
    from safetensors.torch import save_file
    from mae_core.weights import encoder_state_dict
    sd = {k: v.contiguous() for k, v in encoder_state_dict(tiny_mae(img_size=32).state_dict()).items()}
    sd["blocks.3.mlp.fc1.weight"] = torch.zeros(100, 192)
    save_file(sd, tmp_path / "bad.safetensors")
    code = main(["export", "--to", to, "--ckpt", str(tmp_path / "bad.safetensors"), "--out", str(tmp_path / "o.pth")])
    err = capsys.readouterr().err
    assert code == 1 and "blocks.3.mlp.fc1.weight [100, 192] vs [768, 192]" in err and "Traceback" not in err
    assert not (tmp_path / "o.pth").exists()


def test_symlink_loops_and_escapes_never_relabel_images(tmp_path, capsys):
    from PIL import Image
    from transfer.classification.data import ImageFolderDataset
    from mae_core.images import list_images
    for cls in ("n00_circle", "n01_square"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / "train" / cls / f"{i}.png")
    train = tmp_path / "train"
    (train / "n00_circle" / "self").symlink_to(".")  # a loop
    (train / "n01_square" / "up").symlink_to("..")  # the whole split again, under "square"
    (train / "n01_square" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(train / "n01_square" / "sub" / "x.png")  # a real sub-folder still counts
    ds = ImageFolderDataset(tmp_path, "train", transform=None)
    assert sorted(y for _, y in ds.samples) == [0] * 3 + [1] * 4
    err = capsys.readouterr().err
    assert "n00_circle/self" in err and "n01_square/up" in err
    assert len(list_images(train)) == 7  # pretraining reads each real image once


def test_resume_rewinds_the_log_of_a_killed_run(synth_root, tmp_path):
    import json
    out = tmp_path / "run"
    assert main(tiny_pretrain_args(synth_root, out, 2)) == 0
    # as if killed during epoch 1: its checkpoint never written, its log half a line long
    (out / "checkpoint-last.pth").unlink()
    (out / "checkpoint-0.pth").rename(out / "checkpoint-last.pth")
    with open(out / "log.jsonl", "a") as f:
        f.write('{"type": "step", "epo')
    assert main([*tiny_pretrain_args(synth_root, out, 2), "--resume", "auto"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["type"], r["epoch"]) for r in records if r["type"] in ("epoch", "resume")] == [
        ("epoch", 0), ("resume", 0), ("epoch", 1)]
    steps = [r["epoch"] for r in records if r["type"] == "step"]
    assert steps == sorted(steps) and steps.count(1) == len(set(r["step"] for r in records if r["type"] == "step"
                                                                and r["epoch"] == 1))


def test_progress_in_a_log_file_is_plain_lines_without_scheduler_noise(synth_root, tmp_path, capsys, caplog):
    assert main(tiny_pretrain_args(synth_root, tmp_path / "run", 1)) == 0
    err = capsys.readouterr().err
    assert "pretrain 1/1: 3/3 loss" in err and "\r" not in err and "it/s" not in err
    assert "Cosine annealing" not in caplog.text


def _copy_layout(synth_root, tmp_path, name):
    import shutil
    shutil.copytree(synth_root / name, tmp_path / name)
    return tmp_path / name


def test_coco_image_paths_are_confined_and_ids_checked(synth_root, tmp_path, capsys):
    import json
    from transfer.detection.data import CocoInstances, load_coco
    from mae_core.errors import MaeBenchError
    root = _copy_layout(synth_root, tmp_path, "coco")
    ann = root / "annotations" / "instances_train2017.json"
    data = json.loads(ann.read_text())
    data["images"][0]["file_name"] = "../../../../etc/passwd"
    data["images"][1]["file_name"] = str((root / "val2017" / data["images"][1]["file_name"]).resolve())
    ann.write_text(json.dumps(data))
    ds = CocoInstances(root, "train2017", train=True, img_size=32)
    assert ds.skipped["malformed_annotation"] >= 2 and data["images"][0]["id"] not in ds.ids
    with pytest.raises(MaeBenchError, match="leaves"):
        CocoInstances(root, "train2017", train=True, img_size=32, strict=True)
    data["images"][2]["id"] = str(data["images"][2]["id"])
    ann.write_text(json.dumps(data))
    with pytest.raises(MaeBenchError, match=r"images\[2\] needs an integer 'id'"):
        load_coco(ann)


def test_a_broken_ade20k_split_fails_before_training(synth_root, tmp_path, capsys):
    from PIL import Image
    root = _copy_layout(synth_root, tmp_path, "ade20k")
    import numpy as np
    bad = sorted((root / "ADEChallengeData2016" / "annotations" / "validation").glob("*.png"))[1]
    label = np.array(Image.open(bad))
    label[0, 0] = 200  # an id above the class count, in one pixel of one validation label map
    Image.fromarray(label).save(bad)
    out = tmp_path / "run"
    args = ["run", "--task", "ade20k_seg", "--ckpt", "scratch", "--arch", "vit_tiny_patch16", "--data", str(root),
            "--out", str(out), "--recipe", "smoke", "--set", "model.img_size=32"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1 and "class id 200" in err and bad.name in err
    assert not list(out.glob("checkpoint*")) and not (out / "result.json").exists()


def test_decompression_bombs_are_unreadable_images_not_crashes(tmp_path, monkeypatch):
    from PIL import Image
    from mae_core.data import PretrainImages
    from mae_core.errors import MaeBenchError
    from mae_core.images import open_rgb
    for i in range(3):
        Image.new("RGB", (16 if i != 1 else 64, 16)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 64 x 16 = 1024 > 2 x 200: PIL's bomb error
    with pytest.raises(MaeBenchError, match="1.png"):
        open_rgb(tmp_path / "1.png")
    ds = PretrainImages(tmp_path, transform=lambda im: im.size, strict=False)
    with pytest.warns(UserWarning, match="1.png"):
        assert ds[1][0] == (16, 16)  # skipped: the next readable image


def test_pretraining_with_an_unreadable_image_completes(synth_root, tmp_path):
    import shutil
    data = tmp_path / "imgs"
    shutil.copytree(synth_root / "imagenet" / "train", data)
    first = sorted(data.rglob("*.png"))[0]
    first.write_bytes(b"not a png")
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        assert main(tiny_pretrain_args(data, out, 1, ["data.strict=False"])) == 0
    assert (out / "reconstructions.png").exists()


def test_eval_only_with_another_tasks_model_is_one_line(synth_root, tmp_path, capsys):
    from mae_core.checkpoint import save_checkpoint
    weights = tmp_path / "seg.pth"
    save_checkpoint(weights, {"w": torch.zeros(1)}, config={"task": "ade20k_seg", "recipe": {}})
    code = main(["run", "--task", "coco_det", "--ckpt", "scratch", "--arch", "vit_tiny_patch16", "--data",
                 str(synth_root), "--out", str(tmp_path / "run"), "--recipe", "smoke", "--eval-only",
                 "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 1 and "is a ade20k_seg model" in err and "Traceback" not in err


@pytest.mark.parametrize("cached", [True, False])
def test_unreadable_images_are_counted_in_every_classification_split(cached, synth_root, mae_ckpt, tmp_path, capsys):
    import shutil
    from results.record import read_result
    from tests.test_classification import run_args
    data = tmp_path / "imagenet"
    shutil.copytree(synth_root / "imagenet", data)
    sorted((data / "train").rglob("*.png"))[0].write_bytes(b"broken")
    sorted((data / "val").rglob("*.png"))[0].write_bytes(b"broken")
    extra = ["data.augment='none'", "runtime.cache_features=True"] if cached else []
    assert main(run_args("in1k_linear", mae_ckpt, data, tmp_path / "run", epochs=1, extra=extra)) == 0
    ds = read_result(tmp_path / "run")["dataset"]
    n_val = len(list((data / "val").rglob("*.png")))
    assert ds["skipped_samples"] == 1 and ds["val_skipped"] == 1 and ds["val_images"] == n_val - 1
    assert "1 validation images are unreadable" in capsys.readouterr().err


@pytest.mark.parametrize("cached", [True, False])
def test_a_resumed_run_reports_the_skipped_samples_of_an_unbroken_one(cached, synth_root, mae_ckpt, tmp_path):
    """The training samples skipped as unreadable are one count kept over a resume (mae_core.hooks.Counter):
    uncached, the broken image is skipped in each of the 2 epochs (24 images, batches of 8: none left out); with
    cached features, once by the extraction, which a resume does again."""
    import json
    import shutil
    from results.record import read_result
    from tests.test_classification import run_args
    data = tmp_path / "imagenet"
    shutil.copytree(synth_root / "imagenet", data)
    sorted((data / "train").rglob("*.png"))[0].write_bytes(b"broken")
    extra = [f"runtime.cache_features={cached}"]
    full, part = tmp_path / "full", tmp_path / "part"
    for out in (full, part):
        assert main(run_args("in1k_linear", mae_ckpt, data, out, epochs=2, extra=extra)) == 0
    (part / "checkpoint-last.pth").unlink()
    (part / "checkpoint-0.pth").rename(part / "checkpoint-last.pth")  # as if stopped after the first epoch
    assert main([*run_args("in1k_linear", mae_ckpt, data, part, epochs=2, extra=extra), "--resume", "auto"]) == 0
    expected = [1, 1] if cached else [1, 2]  # after each epoch
    for out in (full, part):
        assert read_result(out)["dataset"]["skipped_samples"] == expected[-1]
        logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [r["skipped_samples"] for r in logged if r["type"] == "epoch"] == expected


def test_a_terminated_step_stops_the_suite_as_terminated(synth_root, tmp_path, monkeypatch):
    from benchmarks.config import load_recipe
    from benchmarks.error_lines import Terminated
    from benchmarks.orchestration.suite import DataPaths, run_suite
    calls = []

    def terminated(*args, **kwargs):  # SIGTERM during the first step
        calls.append(args)
        raise Terminated()
    import dataclasses
    monkeypatch.setitem(TASKS, "pretrain", dataclasses.replace(TASKS["pretrain"], runner=terminated))
    with pytest.raises(Terminated):
        run_suite(load_recipe("suite", "tiny"), DataPaths.from_root(synth_root), tmp_path / "suite")
    assert len(calls) == 1


def test_a_failing_suite_step_shows_its_own_message(synth_root, tmp_path, capsys):
    k = {"knn.k": 1000, "schedule.batch_size": 8, "runtime.device": "cpu"}  # more neighbours than training images
    code = main(["suite", "--name", "tiny", "--data-root", str(synth_root), "--out", str(tmp_path / "suite"),
                 "--set", "inits=['scratch']", "--set", "tasks=['knn']", "--set", f"steps.knn.sets={k}"])
    err = capsys.readouterr().err
    assert code == 1 and "suite step 'knn scratch' failed: knn.k must be an integer in [1, 24]" in err


def test_a_missing_key_inside_a_runner_is_named_as_a_key_error(monkeypatch, capsys, tmp_path):
    import dataclasses

    def broken(cfg, **kw):
        return cfg["model"]["no_such_key"]
    monkeypatch.setitem(TASKS, "in1k_linear", dataclasses.replace(TASKS["in1k_linear"], runner=broken))
    code = main(["run", "--task", "in1k_linear", "--ckpt", "scratch", "--arch", "vit_tiny_patch16", "--data",
                 str(tmp_path), "--out", str(tmp_path / "run"), "--recipe", "smoke"])
    err = capsys.readouterr().err
    assert code == 1 and "mae-bench: error: KeyError: no_such_key (run with --debug" in err and "Traceback" not in err


def _coco_json(root, split, change):
    import json
    path = root / "coco" / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _ade_dir(root, kind, split):
    return root / "ade20k" / "ADEChallengeData2016" / kind / split


def _relabel(root, split, fn, index=0):
    import numpy as np
    from PIL import Image
    for i, path in enumerate(sorted(_ade_dir(root, "annotations", split).glob("*.png"))):
        if index is None or i == index:
            Image.fromarray(fn(np.array(Image.open(path)))).save(path)


def _relink(folder, target):
    import shutil
    shutil.rmtree(folder)
    folder.symlink_to(target)


def _set_pixel(value, dtype):
    def fn(a):
        a = a.astype(dtype)
        a[1, 1] = value
        return a
    return fn


def _float_val_image(root):  # a float TIFF with values up to 2 under the first validation image's name
    import numpy as np
    from PIL import Image
    path = sorted(_ade_dir(root, "images", "validation").iterdir())[0]
    w, h = Image.open(path).size
    Image.fromarray(np.full((h, w), 2.0, np.float32), "F").save(path, format="TIFF")


def _knn_args(d, o):
    return ["run", "--task", "knn", "--recipe", "smoke", "--ckpt", "scratch", "--arch", "vit_tiny_patch16", "--data",
            str(d), "--out", str(o), "--set", "model.img_size=32", "--set", "runtime.device='cpu'", "--set", "knn.k=5"]


def _coco_args(d, o):
    from tests.test_detection_train import det_args
    return det_args(d, o)


def _ade_args(d, o):  # two updates of one image: a run this short samples few training label maps
    sets = ["model.img_size=32", "schedule.iters=2", "schedule.batch_size=1", "schedule.eval_interval=2",
            "schedule.warmup_iters=1"]
    return ["run", "--task", "ade20k_seg", "--ckpt", "scratch", "--arch", "vit_tiny_patch16", "--data", str(d),
            "--out", str(o), "--recipe", "smoke", *[a for s in sets for a in ("--set", s)]]


def _all_crowd(data):
    for a in data["annotations"]:
        a["iscrowd"] = 1


def _repeat_first_id(data):
    data["images"][1]["id"] = data["images"][0]["id"]


# Data that would give wrong numbers, found once the run has started but before any training:
# (name, layout copied, corrupt(root), argv(root, out), a phrase the one error line must hold)
BAD_DATA = [
    ("imagenet val linked to train", "imagenet",
     lambda r: _relink(r / "imagenet" / "val", r / "imagenet" / "train"), _knn_args, "is the training split"),
    ("coco val all crowd", "coco", lambda r: _coco_json(r, "val2017", _all_crowd), _coco_args,
     "no non-crowd annotation"),
    ("coco duplicate image ids", "coco", lambda r: _coco_json(r, "val2017", _repeat_first_id), _coco_args,
     "repeats the id 1 of images[0]"),
    ("coco val2017 linked to train2017", "coco", lambda r: _relink(r / "coco" / "val2017", r / "coco" / "train2017"),
     _coco_args, "is the training split"),
    ("ade20k training label id 200", "ade20k", lambda r: _relabel(r, "training", _set_pixel(200, "uint8"), 5),
     _ade_args, "synth_train_000005.png has class id 200"),
    ("ade20k 16-bit training label 300", "ade20k", lambda r: _relabel(r, "training", _set_pixel(300, "uint16"), 2),
     _ade_args, "has class id 300"),
    ("ade20k float validation image outside [0, 1]", "ade20k", _float_val_image, _ade_args,
     "a float image with values in [2, 2], not [0, 1]"),
    ("ade20k all-ignore validation", "ade20k", lambda r: _relabel(r, "validation", lambda a: a * 0, None),
     _ade_args, "nothing to score"),
    ("ade20k validation images linked to training", "ade20k",
     lambda r: _relink(_ade_dir(r, "images", "validation"), _ade_dir(r, "images", "training")), _ade_args,
     "is the training split"),
]


@pytest.mark.parametrize("name,layout,corrupt,argv,phrase", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_is_one_line_before_training(name, layout, corrupt, argv, phrase, synth_root, tmp_path, capsys):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synth_root / layout, root / layout)
    corrupt(root)
    out = tmp_path / "run"
    code = main(argv(root, out))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mae-bench: error:")]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert phrase in lines[0], lines[0]
    assert not (out / "result.json").exists() and not list(out.glob("checkpoint*")) and not (out / "model_final.pth").exists()


def test_a_read_only_file_system_under_out_is_one_line(synth_root, tmp_path, capsys, monkeypatch):
    import errno

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
    monkeypatch.setattr(Path, "mkdir", read_only)
    code = main(tiny_pretrain_args(synth_root, tmp_path / "run", 1))
    err = capsys.readouterr().err
    assert code == 1 and "cannot write the run folder" in err and "Read-only file system" in err, err
    assert "Traceback" not in err and "OSError" not in err
