"""A run folder holding a finished or resumable run is refused to a run of another init or dataset (one line), and its
files are left as they were; the same run continues."""
import json
import shutil

from benchmarks.cli import main
from benchmarks.running.identity import IDENTITY_FILE, difference, listing_fingerprint
from benchmarks.running.run_folder import LOCK
from results.record import sha256_file
from tests.conftest import tiny_pretrain_args
from tests.test_classification import run_args


def _knn(data, out, ckpt):
    return main(["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(ckpt), "--arch", "vit_tiny_patch16",
                 "--data", str(data), "--out", str(out), "--set", "model.img_size=32", "--set", "schedule.batch_size=8",
                 "--set", "runtime.device='cpu'", "--set", "knn.k=5"])


def _files(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != LOCK}


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mae-bench: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_finished_knn_run_is_not_replaced_by_another_init_or_dataset(synth_root, mae_ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    assert _knn(synth_root, out, mae_ckpt) == 0
    stored = json.loads((out / IDENTITY_FILE).read_text())
    assert stored["init"]["sha256"] == sha256_file(mae_ckpt) and stored["task"] == "knn"
    assert stored["data"]["root"] == str((synth_root / "imagenet").resolve())
    before = _files(out)
    capsys.readouterr()

    assert _knn(synth_root, out, "scratch") == 1
    line = _one_error(capsys)
    assert f"init mae checkpoint sha256 {sha256_file(mae_ckpt)[:12]}.." in line
    assert "this run's init is scratch (vit_tiny_patch16)" in line
    assert _files(out) == before

    link = tmp_path / "link"  # the same folder through a symlinked --out
    link.symlink_to(out)
    assert _knn(synth_root, link, "scratch") == 1
    assert "this run's init is scratch" in _one_error(capsys)

    other = tmp_path / "other"  # another dataset: a copy of the same images
    shutil.copytree(synth_root / "imagenet", other / "imagenet")
    assert _knn(other, out, mae_ckpt) == 1
    assert f"this run's data is {(other / 'imagenet').resolve()}" in _one_error(capsys)
    assert _files(out) == before

    victim = sorted((synth_root / "imagenet" / "val").rglob("*.png"))[0]  # the same root, its listing changed
    shadow = tmp_path / "data"
    shutil.copytree(synth_root, shadow)
    out2 = tmp_path / "run2"
    assert _knn(shadow, out2, mae_ckpt) == 0
    (shadow / victim.relative_to(synth_root)).unlink()
    capsys.readouterr()
    assert _knn(shadow, out2, mae_ckpt) == 1
    assert "its listing differs now" in _one_error(capsys)

    assert _knn(synth_root, out, mae_ckpt) == 0  # the same run again: allowed, the same numbers
    assert json.loads(_files(out)["result.json"])["metrics"] == json.loads(before["result.json"])["metrics"]


def test_resume_auto_with_another_init_is_refused(synth_root, mae_ckpt, tmp_path, capsys):
    out = tmp_path / "lin"
    extra = ["data.augment='none'", "runtime.cache_features=True"]
    assert main(run_args("in1k_linear", mae_ckpt, synth_root, out, epochs=1, extra=extra)) == 0
    (out / "result.json").unlink()  # as if killed before the end: resumable from its checkpoint
    before = _files(out)
    capsys.readouterr()
    argv = run_args("in1k_linear", "scratch", synth_root, out, epochs=1, extra=extra, arch="vit_tiny_patch16")
    assert main([*argv, "--resume", "auto"]) == 1
    assert "this run's init is scratch" in _one_error(capsys)
    assert _files(out) == before and not (out / "result.json").exists()
    assert main([*run_args("in1k_linear", mae_ckpt, synth_root, out, epochs=1, extra=extra), "--resume", "auto"]) == 0


def test_pretraining_into_a_run_of_other_data_is_refused(synth_root, tmp_path, capsys):
    data = tmp_path / "imgs"
    shutil.copytree(synth_root / "imagenet" / "train", data)
    out = tmp_path / "pre"
    assert main(tiny_pretrain_args(data, out, 1)) == 0
    before = _files(out)
    sorted(data.rglob("*.png"))[0].unlink()
    capsys.readouterr()
    assert main([*tiny_pretrain_args(data, out, 1), "--resume", "auto"]) == 1
    assert "its listing differs now (23 files" in _one_error(capsys)
    assert _files(out) == before


def test_the_listing_fingerprint_is_names_and_sizes_and_skips_the_cache(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"12")
    fp = listing_fingerprint(tmp_path)
    (tmp_path / ".mae-bench-cache").mkdir()
    (tmp_path / ".mae-bench-cache" / "sha256.json").write_text("{}")
    (tmp_path / "loop").symlink_to(".")  # followed once at most
    assert listing_fingerprint(tmp_path) == fp and fp["files"] == 1
    (tmp_path / "a" / "x.png").write_bytes(b"123")
    assert listing_fingerprint(tmp_path) != fp


def test_difference_names_the_first_thing_that_differs():
    base = {"task": "knn", "recipe_sha256": "r", "init": {"kind": "mae", "sha256": "ab" * 32, "arch": None},
            "data": {"root": "/d", "files": 3, "listing_sha256": "l"}, "options": {}}
    assert difference(base, base) is None
    assert "task knn; this run's task is in1k_linear" in difference(base, {**base, "task": "in1k_linear"})
    scratch = {**base, "init": {"kind": "scratch", "sha256": None, "arch": "vit_base_patch16"}}
    assert difference(scratch, {**scratch, "init": {**scratch["init"], "arch": "vit_large_patch16"}})
    assert "this run's options" in difference(base, {**base, "options": {"eval_only": True}})


# ---- one read of the checkpoint per run (issue 20, item 7) ----------------------------------------------------
def _count_opens(monkeypatch, path) -> list:
    """Every Python open of `path` (builtins.open and io.open, which pathlib uses), counted as it happens."""
    import builtins
    import io
    import os
    real, target, opened = builtins.open, os.path.realpath(path), []

    def counting(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(file) == target:
            opened.append(file)
        return real(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", counting)
    monkeypatch.setattr(io, "open", counting)
    return opened


def test_a_run_reads_its_checkpoint_once_and_its_identity_and_record_hold_that_hash(synth_root, tmp_path,
                                                                                   monkeypatch):
    from mae_core import checkpoint
    from tests.conftest import tiny_mae
    ckpt = tmp_path / "mae.pth"  # a file no earlier run of this process has hashed
    checkpoint.save_checkpoint(ckpt, tiny_mae().state_dict(), config={"arch": "vit_tiny_patch16"})
    opened = _count_opens(monkeypatch, ckpt)
    out = tmp_path / "run"
    assert _knn(synth_root, out, ckpt) == 0
    assert len(opened) == 1, opened
    identity = json.loads((out / IDENTITY_FILE).read_text())
    record = json.loads((out / "result.json").read_text())
    assert identity["init"]["sha256"] == record["init"]["sha256"] == sha256_file(ckpt)
    assert not checkpoint._KEPT  # nothing held after the run
    opened.clear()
    assert _knn(synth_root, tmp_path / "again", ckpt) == 0  # hashed already: the loader's read is the one read
    assert len(opened) == 1, opened


def test_a_file_too_large_to_keep_is_hashed_once_per_run(synth_root, tmp_path, monkeypatch):
    """Over HASH_IN_MEMORY, the identity hashes the file and the loader parses it; it is not hashed twice."""
    from mae_core import checkpoint
    from tests.conftest import tiny_mae
    ckpt = tmp_path / "big.pth"
    checkpoint.save_checkpoint(ckpt, tiny_mae().state_dict(), config={"arch": "vit_tiny_patch16"})
    monkeypatch.setattr(checkpoint, "HASH_IN_MEMORY", 0)
    hashed, real = [], checkpoint._hash_file
    monkeypatch.setattr(checkpoint, "_hash_file", lambda p: hashed.append(p) or real(p))
    out = tmp_path / "run"
    assert _knn(synth_root, out, ckpt) == 0
    assert len(hashed) == 1 and not checkpoint._KEPT
    assert json.loads((out / IDENTITY_FILE).read_text())["init"]["sha256"] == sha256_file(ckpt) == \
        json.loads((out / "result.json").read_text())["init"]["sha256"]


def test_kept_bytes_serve_only_the_same_unchanged_file(tmp_path):
    import hashlib
    import os
    import torch
    from mae_core import checkpoint
    path = tmp_path / "w.pth"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    first = checkpoint.file_sha256(path, keep=True)
    assert checkpoint._KEPT
    torch.save({"model": {"w": torch.ones(3)}}, path)  # rewritten after the identity hashed it
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new mtime even on a coarse clock
    top, sha = checkpoint.read_checkpoint_hashed(path)
    assert torch.equal(top["model"]["w"], torch.ones(3)) and sha == hashlib.sha256(path.read_bytes()).hexdigest() != first
    assert checkpoint.file_sha256(path) == sha  # the loader's hash of the new bytes serves the next identity
    other = tmp_path / "v.pth"
    torch.save({"model": {"w": torch.full((2,), 2.0)}}, other)
    checkpoint.file_sha256(other, keep=True)
    top, again = checkpoint.read_checkpoint_hashed(other)  # taken from the slot, which it empties
    assert again == sha256_file(other) and torch.equal(top["model"]["w"], torch.full((2,), 2.0))
    assert not checkpoint._KEPT


def test_a_folder_hash_follows_its_files(tmp_path):
    import os
    from mae_core.checkpoint import file_sha256
    folder = tmp_path / "hf"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    weights = folder / "sub" / "model.safetensors"
    weights.write_bytes(b"a" * 8)
    first = file_sha256(folder)
    weights.write_bytes(b"b" * 8)  # rewritten in place: the folder's own times do not change
    st = os.stat(weights)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_sha256(folder) != first
