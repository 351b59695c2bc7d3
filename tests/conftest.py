import pytest
import torch

from mae_core.models import create_mae


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_mae(**kw):
    """A seconds-fast MAE: ViT-Tiny/16 on 32 px images (2 x 2 patches) unless overridden."""
    args = dict(img_size=32, decoder_depth=1, decoder_embed_dim=64, decoder_num_heads=4)
    args.update(kw)
    return create_mae("vit_tiny_patch16", **args)


@pytest.fixture
def tiny():
    return tiny_mae


@pytest.fixture(scope="module")
def mae_ckpt(tmp_path_factory):
    """A randomly initialised tiny MAE (32 px) saved as our checkpoint format."""
    from mae_core.checkpoint import save_checkpoint
    mae = tiny_mae(img_size=32)
    path = tmp_path_factory.mktemp("ckpt") / "mae.pth"
    save_checkpoint(path, mae.state_dict(), config={**mae.config, "arch": "vit_tiny_patch16"})
    return path


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small synthetic scene set (32 px) shared by the tests."""
    from transfer.synth import generate
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=24, n_val=8, img_size=32, seed=0, progress=False)
    return root


# a pretraining recipe that runs in about a second per epoch on 2 cores
TINY_PRETRAIN = ["model.arch=vit_tiny_patch16", "model.img_size=32", "model.decoder_depth=1",
                 "model.decoder_embed_dim=64", "model.decoder_num_heads=4", "schedule.batch_size=8",
                 "schedule.warmup_epochs=1", "runtime.log_every=1", "runtime.save_every=1", "data.num_workers=0",
                 "runtime.device=cpu", "runtime.cpu_linear=onednn"]  # fixed: tests compare independent runs bitwise


def tiny_pretrain_args(data, out, epochs=2, extra=()):
    sets = [a for s in [*TINY_PRETRAIN, *extra] for a in ("--set", s)]
    return ["pretrain", "--data", str(data), "--out", str(out), "--recipe", "smoke", "--epochs", str(epochs), *sets]
