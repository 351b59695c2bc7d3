import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.cli import main
from mae_core.checkpoint import read_checkpoint
from mae_core.data import PretrainImages
from mae_core.engine import Engine, TrainingDiverged, epoch_cosine_schedule, scaled_lr
from mae_core.errors import MaeBenchError
from mae_core.pretrain import PretrainTrainer
from mae_core.distributed import DistInfo
from tests.conftest import tiny_mae, tiny_pretrain_args

REPO = Path(__file__).resolve().parents[1]


def cosine_lr_formula(update: float, base_lr: float, total: int, warmup: int, min_lr: float = 0.0) -> float:
    """The official MAE schedule in closed form (util/lr_sched.py): linear warm-up, then half-cycle cosine."""
    if update < warmup:
        return base_lr * update / warmup
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (update - warmup) / (total - warmup)))


def _weights(path):
    return read_checkpoint(path)["model"]


def build_optimizer(model, optim: dict, lr: float):
    """The optimiser pretraining trains `model` with (`PretrainTrainer.build_optimizer`, the trainer's default)."""
    trainer = PretrainTrainer.__new__(PretrainTrainer)
    trainer.model, trainer.cfg, trainer.lr = model, {"optim": optim}, lr
    return trainer.build_optimizer()


def test_loss_decreases_over_a_few_dozen_steps():
    model = tiny_mae(img_size=32)
    imgs = torch.randn(8, 3, 32, 32)
    noise = torch.rand(8, 4)
    opt = build_optimizer(model, {"weight_decay": 0.05, "betas": (0.9, 0.95)}, lr=1e-3)
    losses = []
    for _ in range(40):
        loss, _, _ = model(imgs, noise=noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0] and losses[-1] < min(losses[:5])


@pytest.mark.parametrize("in_encoder", [False, True])
def test_weight_decay_groups_follow_the_official_rule(in_encoder):
    # official main_pretrain.py: timm's add_weight_decay(model, wd) with no skip list: no decay exactly for
    # parameters with one dimension or a name ending in ".bias"; every other trainable parameter (the weight
    # matrices, cls_token, mask_token) is decayed; frozen ones (the position embeddings) are in no group
    model = tiny_mae(img_size=32, mask_tokens_in_encoder=in_encoder)
    optimizer = build_optimizer(model, {"weight_decay": 0.05, "betas": (0.9, 0.95)}, lr=1e-3)
    got = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    want = {id(p): 0.0 if len(p.shape) == 1 or name.endswith(".bias") else 0.05
            for name, p in model.named_parameters() if p.requires_grad}
    assert got == want
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[i] for i, wd in got.items() if wd}
    assert {"cls_token", "encoder_mask_token" if in_encoder else "mask_token"} <= decayed
    assert not {"pos_embed", "decoder_pos_embed"} & {names[i] for i in got}


def test_pretraining_reads_only_train_of_an_imagenet_root(synth_root, tmp_path):
    src = sorted((synth_root / "imagenet" / "train").rglob("*.png"))
    for split, files in (("train", src[:3]), ("val", src[3:6])):
        (tmp_path / "root" / split / "n0").mkdir(parents=True)
        for f in files:
            (tmp_path / "root" / split / "n0" / f.name).write_bytes(f.read_bytes())
    ds = PretrainImages(tmp_path / "root", transform=None)
    assert sorted(Path(f).name for f in ds.files) == sorted(f.name for f in src[:3])
    assert all("val" not in Path(f).relative_to(tmp_path / "root").parts for f in ds.files)
    assert len(PretrainImages(synth_root, transform=None)) == len(src)  # the synthetic root: imagenet/train
    assert len(PretrainImages(tmp_path / "root" / "val" / "n0", transform=None)) == 3  # a plain folder: all of it
    (tmp_path / "root" / "train").rename(tmp_path / "only_val")
    with pytest.raises(MaeBenchError, match="never reads validation"):
        PretrainImages(tmp_path / "root", transform=None)


def test_lr_schedule_matches_formula():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=scaled_lr(1.5e-4, 4096))
    assert opt.param_groups[0]["lr"] == pytest.approx(2.4e-3)
    scheduler = epoch_cosine_schedule(opt, epochs=10, updates_per_epoch=7, warmup_epochs=2, min_lr=1e-6)
    total, warm = 70, 14
    for update in (0, 5, warm - 1, warm, 40, total - 1, total):
        scheduler.step_update(update)
        assert opt.param_groups[0]["lr"] == pytest.approx(cosine_lr_formula(update, 2.4e-3, total, warm, 1e-6), rel=1e-9)
    scheduler.step_update(warm)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.4e-3)
    scheduler.step_update(total)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6)


def test_pretrain_cli_writes_checkpoints_logs_and_picture(synth_root, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_pretrain_args(synth_root / "imagenet" / "train", out, epochs=2,
                                   extra=["runtime.keep_last=1"])) == 0
    assert {p.name for p in out.glob("checkpoint-*.pth")} == {"checkpoint-last.pth", "checkpoint-1.pth"}
    ckpt = read_checkpoint(out / "checkpoint-last.pth")
    assert set(ckpt) >= {"model", "optimizer", "epoch", "scaler", "config"} and ckpt["epoch"] == 1
    assert ckpt["config"]["arch"] == "vit_tiny_patch16"
    lines = (out / "log.jsonl").read_text().splitlines()
    assert sum('"type": "epoch"' in line for line in lines) == 2 and sum('"type": "step"' in line for line in lines) == 6
    assert (out / "reconstructions.png").stat().st_size > 0 and (out / "recipe.py").exists()
    assert "arch" in (out / "recipe.py").read_text()
    # pretraining is a task: its result record holds the last epoch's logged loss, and a resumed finished run
    # (which trains nothing) records the same loss again
    import json

    from results.record import read_result
    last = [json.loads(line) for line in lines if '"type": "epoch"' in line][-1]
    rec = read_result(out)
    assert (rec["task"], rec["init"]["kind"], rec["arch"]) == ("pretrain", "scratch", "vit_tiny_patch16")
    assert rec["metrics"] == {"loss": pytest.approx(last["loss"])} and rec["dataset"]["images"] == 24
    assert main([*tiny_pretrain_args(synth_root / "imagenet" / "train", out, epochs=2,
                                     extra=["runtime.keep_last=1"]), "--resume", "auto"]) == 0
    assert read_result(out)["metrics"] == rec["metrics"]


def test_resume_equals_unbroken_run(synth_root, tmp_path):
    data = synth_root / "imagenet" / "train"
    assert main(tiny_pretrain_args(data, tmp_path / "full", epochs=2)) == 0
    # stopped after epoch 1 (a 2-epoch schedule cut short), then resumed with --resume auto
    part = tmp_path / "part"
    assert main(tiny_pretrain_args(data, part, epochs=2)) == 0
    (part / "checkpoint-last.pth").unlink()
    (part / "checkpoint-0.pth").rename(part / "checkpoint-last.pth")
    assert main([*tiny_pretrain_args(data, part, epochs=2), "--resume", "auto"]) == 0
    a, b = _weights(tmp_path / "full" / "checkpoint-last.pth"), _weights(part / "checkpoint-last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp_equals_one_process(synth_root, tmp_path):
    data = synth_root / "imagenet" / "train"
    one = tmp_path / "one"
    assert main(tiny_pretrain_args(data, one, epochs=1)) == 0
    two = tmp_path / "two"
    args = tiny_pretrain_args(data, two, epochs=1, extra=["schedule.batch_size=4"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "benchmarks.cli", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _weights(one / "checkpoint-last.pth"), _weights(two / "checkpoint-last.pth")
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    model = tiny_mae(img_size=32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine = Engine(model, opt, scheduler=None, run_dir=tmp_path, dist=DistInfo(), total_updates=6,
                    updates_per_epoch=2, log_every=1)
    calls = {"n": 0}

    def step(net, batch):
        calls["n"] += 1
        loss, _, _ = net(batch)
        return (loss * math.nan if calls["n"] == 3 else loss), batch.shape[0]

    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 1 step 0"):
        engine.fit(lambda epoch: [torch.randn(2, 3, 32, 32)] * 2, step)
    ckpt = read_checkpoint(tmp_path / "checkpoint-last.pth")
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_bad_inputs_get_one_line_and_nonzero_exit(synth_root, tmp_path, capsys):
    def run(*argv):
        code = main(list(argv))
        err = capsys.readouterr().err
        errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("mae-bench: error:")]
        assert code != 0 and len(errors) == 1 and "Traceback" not in err, err
        return errors[0]

    assert "dataset path not found" in run(*tiny_pretrain_args(tmp_path / "nope", tmp_path / "r1"))
    (tmp_path / "empty").mkdir()
    assert "no images" in run(*tiny_pretrain_args(tmp_path / "empty", tmp_path / "r2"))
    bad = tmp_path / "bad"
    bad.mkdir()
    for i, f in enumerate(sorted((synth_root / "imagenet" / "train").rglob("*.png"))[:8]):
        (bad / f"{i}.png").write_bytes(f.read_bytes())
    (bad / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert "cannot decode image" in run(*tiny_pretrain_args(bad, tmp_path / "r3", epochs=1))
    # the same from a DataLoader worker process: still the worker's one-line message
    assert run(*tiny_pretrain_args(bad, tmp_path / "r3w", epochs=1, extra=["data.num_workers=1"])).startswith(
        "mae-bench: error: cannot decode image")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert "cannot read checkpoint" in run(*tiny_pretrain_args(synth_root / "imagenet" / "train", tmp_path / "r4"),
                                           "--resume", str(tmp_path / "junk.pth"))
    assert "unknown recipe key" in run(*tiny_pretrain_args(synth_root, tmp_path / "r5", extra=["model.nope=1"]))


def test_checkpoints_store_the_plain_module_under_compile():
    from timm.utils import unwrap_model  # the engine's default for what checkpoints hold
    model = tiny_mae(img_size=32)
    assert unwrap_model(torch.compile(model)) is model and unwrap_model(model) is model
