"""The ImageNet protocols against the official MAE algorithms, each written here from its published semantics:
LARS (util/lars.py), layer-wise lr decay (util/lr_decay.py), the eval transform (util/datasets.py), partial
fine-tuning of 0 blocks = the linear probe (paper Fig. 9), and the EMA model of the supervised baseline (A.2)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from torchvision import transforms as T

from benchmarks.cli import main
from benchmarks.config import load_recipe, resolved
from mae_core.checkpoint import read_checkpoint
from mae_core.distributed import DistInfo
from mae_core.engine import Engine
from mae_core.errors import MaeBenchError
from mae_core.images import IMAGENET_MEAN, IMAGENET_STD
from results.record import read_result
from tests.test_classification import run_args
from transfer.classification import train as train_mod
from transfer.classification.data import ImageFolderDataset, SingleDrawResizedCrop, eval_transform, train_transform
from transfer.classification.heads import set_trainable
from transfer.classification.optim import Lars, param_groups_lrd
from transfer.classification.train import build_classifier, build_optimizer, resolve_protocol
from transfer.encoder import build_vit, init_encoder


# ---- LARS -------------------------------------------------------------------------------------------
def reference_lars(params, grads, mus, lr, weight_decay, momentum=0.9, trust=0.001):
    """One step of MoCo v3 / MAE LARS in float64 numpy: ndim > 1: d = (g + wd p) * trust ||p|| / ||g + wd p||
    (ratio 1 if a norm is 0); 1-D: d = g; then mu = momentum mu + d, p -= lr mu."""
    out_p, out_mu = [], []
    for p, g, mu in zip(params, grads, mus):
        d = g
        if p.ndim > 1:
            d = g + weight_decay * p
            pn, dn = np.linalg.norm(p), np.linalg.norm(d)
            d = d * (trust * pn / dn if pn > 0 and dn > 0 else 1.0)
        mu = momentum * mu + d
        out_p.append(p - lr * mu)
        out_mu.append(mu)
    return out_p, out_mu


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_lars_equals_the_official_update_step_by_step(weight_decay):
    rng = np.random.default_rng(0)
    shapes = [(5, 7), (7,), (3, 4), (2, 3, 4), (6,)]
    values = [rng.normal(size=s) for s in shapes]
    values[2][:] = 0.0  # ||p|| = 0: trust ratio 1
    params = [nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in values]
    opt = Lars(params, lr=0.0, weight_decay=weight_decay)
    ref_p, ref_mu = [v.copy() for v in values], [np.zeros(s) for s in shapes]
    for step, lr in enumerate([0.5, 2.0, 6.4, 3.0, 1.0, 0.1]):
        grads = [rng.normal(size=s) for s in shapes]
        if step == 2:
            grads[3][:] = 0.0  # ||g|| = 0 once (ratio 1 when wd = 0)
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.param_groups[0]["lr"] = lr
        opt.step()
        ref_p, ref_mu = reference_lars(ref_p, grads, ref_mu, lr, weight_decay)
        for p, want in zip(params, ref_p):
            np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-12, atol=1e-12)


def test_lars_state_survives_a_resume():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3).double(), nn.Linear(4, 3).double()
    b.load_state_dict(a.state_dict())
    oa, ob = Lars(a.parameters(), lr=1.0), Lars(b.parameters(), lr=1.0)
    x = torch.randn(8, 4, dtype=torch.float64)

    def step(m, o):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()

    for i in range(4):
        if i == 2:  # b resumes from its optimiser state with a new optimiser object
            state = ob.state_dict()
            ob = Lars(b.parameters(), lr=1.0)
            ob.load_state_dict(state)
        step(a, oa)
        step(b, ob)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_linear_probe_optimizer_is_lars_on_the_head():
    cfg = resolved(load_recipe("in1k_linear", "base", ["model.img_size=32"]))
    model, _ = build_classifier(cfg, "scratch", "vit_tiny_patch16", 5, "linear")
    opt = build_optimizer(model, cfg, lr=6.4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert isinstance(opt, Lars) and opt.defaults["momentum"] == 0.9 and opt.defaults["trust_coefficient"] == 0.001
    assert {names[id(p)] for g in opt.param_groups for p in g["params"]} == {"head.1.weight", "head.1.bias"}


# ---- layer-wise lr decay -----------------------------------------------------------------------------
def official_layer_id(name, num_layers):
    """util/lr_decay.py get_layer_id_for_vit."""
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks"):
        return int(name.split(".")[1]) + 1
    return num_layers


@pytest.mark.parametrize("pool, blocks", [("token", None), ("avg", None), ("token", 3)])
def test_layer_decay_groups_follow_the_official_rule(pool, blocks):
    model = build_vit("vit_tiny_patch16", img_size=32, num_classes=5, global_pool=pool)
    if blocks is not None:
        set_trainable(model, "partial", blocks)
    decay, wd = 0.65, 0.05
    groups = param_groups_lrd(model, wd, no_weight_decay_list=model.no_weight_decay(), layer_decay=decay)
    num_layers = len(model.blocks) + 1
    scales = [decay ** (num_layers - i) for i in range(num_layers + 1)]
    got = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    want = {id(p): (scales[official_layer_id(n, num_layers)],
                    0.0 if p.ndim == 1 or n in model.no_weight_decay() else wd)
            for n, p in model.named_parameters() if p.requires_grad}
    assert got.keys() == want.keys()
    for k in want:
        assert got[k][0] == pytest.approx(want[k][0], rel=1e-12) and got[k][1] == want[k][1]
    if pool == "token":  # the final norm is not in a block: scale 1 (timm's groups gave it the last block's)
        assert got[id(model.norm.weight)][0] == 1.0


# ---- evaluation transform ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 224, 256, 448])
def test_eval_transform_crop_pct_is_the_official_rule(size):
    crop_pct = 224 / 256 if size <= 224 else 1.0  # util/datasets.py build_transform
    ref = T.Compose([T.Resize(int(size / crop_pct), interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                     T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    img = Image.fromarray((np.random.default_rng(size).random((size + 37, size + 91, 3)) * 255).astype(np.uint8))
    assert torch.equal(eval_transform(size)(img), ref(img))
    assert eval_transform(448, 0.875).transforms[0].size == 512
    with pytest.raises(MaeBenchError, match="crop_pct"):
        eval_transform(size, 1.5)


def reference_crop_params(width, height, scale, ratio):
    """MAE util/crop.py (BYOL's TF crop): area ~ U(scale) x image area, log aspect ~ U(log ratio) (float32
    bounds), w = round(sqrt(area * aspect)), h = round(sqrt(area / aspect)), each clipped to the image, then a
    uniform offset; no retries."""
    area = width * height * torch.empty(1).uniform_(*scale).item()
    lo, hi = torch.log(torch.tensor(ratio)).tolist()
    aspect = math.exp(torch.empty(1).uniform_(lo, hi).item())
    w, h = min(round(math.sqrt(area * aspect)), width), min(round(math.sqrt(area / aspect)), height)
    return torch.randint(0, height - h + 1, (1,)).item(), torch.randint(0, width - w + 1, (1,)).item(), h, w


def test_linear_probe_crop_is_the_official_single_draw_crop():
    crop = train_transform("linear", 32, {}).transforms[0]
    assert isinstance(crop, SingleDrawResizedCrop)
    for seed, (w, h) in enumerate([(40, 40), (200, 30), (31, 97), (64, 48)] * 25):
        img = Image.new("RGB", (w, h))
        torch.manual_seed(seed)
        ours = crop.get_params(img, crop.scale, crop.ratio)
        torch.manual_seed(seed)
        assert ours == reference_crop_params(w, h, (0.08, 1.0), (3 / 4, 4 / 3)), (seed, w, h)


# ---- partial fine-tuning: K = 0 is the linear probe, frozen blocks run no drop path --------------------------
@pytest.mark.parametrize("name", ["base", "paper", "smoke", "subset"])
def test_partial_k0_resolves_to_the_linear_probe_recipe(name):
    partial = resolved(load_recipe("in1k_partial", name, {"blocks": 0}))
    assert resolve_protocol(partial) == "linear"
    linear = resolved(load_recipe("in1k_linear", name))
    for section in ("model", "data", "mixup", "optim", "runtime"):
        assert partial[section] == linear[section], section
    assert {k: v for k, v in partial["schedule"].items() if k != "epochs_per_blocks"} == linear["schedule"]


def test_epochs_per_blocks_and_bad_values():
    cfg = resolved(load_recipe("in1k_partial", "paper", {"blocks": 4, "schedule.epochs_per_blocks": ((4, 200), (1, 100))}))
    assert resolve_protocol(cfg) == "partial" and cfg["schedule"]["epochs"] == 200
    cfg = resolved(load_recipe("in1k_partial", "paper", {"blocks": 2, "schedule.epochs_per_blocks": ((4, 200),)}))
    assert resolve_protocol(cfg) == "partial" and cfg["schedule"]["epochs"] == 50
    cfg = resolved(load_recipe("in1k_partial", "paper", {"blocks": 0}))
    del cfg["linear_probe"]
    with pytest.raises(MaeBenchError, match="linear_probe"):
        resolve_protocol(cfg)
    cfg = resolved(load_recipe("in1k_partial", "paper", {"blocks": 1}))
    with pytest.raises(MaeBenchError, match="at least 1"):
        resolve_protocol({**cfg, "schedule": {**cfg["schedule"], "epochs_per_blocks": ((1, 0),)}})
    with pytest.raises(MaeBenchError, match="pairs"):
        resolve_protocol({**cfg, "schedule": {**cfg["schedule"], "epochs_per_blocks": (1, 100)}})
    for bad in (((1, 0),), (1, 100)):  # the recipe's schema refuses both before any work
        with pytest.raises(MaeBenchError, match=r"schedule.epochs_per_blocks=.* is invalid: it must be a list or tuple"):
            load_recipe("in1k_partial", "paper", {"blocks": 1, "schedule.epochs_per_blocks": bad})


@pytest.mark.parametrize("protocol, blocks, frozen", [("partial", 2, 10), ("linear", 0, 12), ("finetune", 0, 0)])
def test_frozen_blocks_run_no_drop_path(protocol, blocks, frozen):
    model = build_vit("vit_tiny_patch16", img_size=32, num_classes=5, global_pool="avg", drop_path_rate=0.5)
    set_trainable(model, protocol, blocks)
    for i, block in enumerate(model.blocks):
        identity = isinstance(block.drop_path1, nn.Identity) and isinstance(block.drop_path2, nn.Identity)
        assert identity == (i < frozen or i == 0), i  # timm's rate schedule starts at 0 for block 0
    model.train()
    x = torch.randn(2, 3, 32, 32)
    if frozen == 12:  # a frozen encoder in train mode is deterministic
        assert torch.equal(model.forward_features(x), model.forward_features(x))


def test_partial_k0_trains_what_the_linear_probe_trains(synth_root, mae_ckpt, tmp_path):
    tiny = ["schedule.epochs=2", "schedule.batch_size=8", "schedule.warmup_epochs=1", "runtime.save_every=1"]
    assert main(run_args("in1k_linear", mae_ckpt, synth_root, tmp_path / "lin", extra=tiny)) == 0
    assert main(run_args("in1k_partial", mae_ckpt, synth_root, tmp_path / "k0",
                         extra=["blocks=0", *(f"linear_probe.{s}" for s in tiny)])) == 0
    lin, k0 = read_checkpoint(tmp_path / "lin" / "checkpoint-last.pth"), read_checkpoint(tmp_path / "k0" / "checkpoint-last.pth")
    assert lin["model"].keys() == k0["model"].keys() and all(torch.equal(lin["model"][k], k0["model"][k]) for k in lin["model"])
    assert lin["optimizer"]["param_groups"][0]["momentum"] == k0["optimizer"]["param_groups"][0]["momentum"] == 0.9
    rec = read_result(tmp_path / "k0")
    assert rec["protocol"] == "partial" and rec["blocks"] == 0 and rec["recipe"]["optim"]["name"] == "lars"
    assert rec["metrics"]["top1"] == read_result(tmp_path / "lin")["metrics"]["top1"]


# ---- supervised baseline: the EMA model is the result ----------------------------------------------------
class RecordingEma(train_mod.ModelEmaV3):
    """Records the trained weights after every update, to rebuild the EMA independently."""
    trajectory: list = []

    def __init__(self, model, decay):
        super().__init__(model, decay=decay)
        RecordingEma.trajectory = [{k: v.detach().clone().double() for k, v in model.state_dict().items()}]

    def update(self, model, step=None):
        RecordingEma.trajectory.append({k: v.detach().clone().double() for k, v in model.state_dict().items()})
        super().update(model, step)


def _top1(state, root):
    model = build_vit("vit_tiny_patch16", img_size=32, num_classes=8, global_pool="avg")
    model.load_state_dict(state)
    model.eval()
    ds = ImageFolderDataset(root, "val", eval_transform(32), img_size=32)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    with torch.no_grad():
        return 100.0 * (model(x).argmax(1) == y).float().mean().item()


def test_supervised_baseline_reports_and_exports_the_ema_model(synth_root, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "ModelEmaV3", RecordingEma)
    decay = 0.6
    out = tmp_path / "sup"
    assert main(run_args("in1k_finetune", "scratch", synth_root, out, epochs=2, arch="vit_tiny_patch16",
                         extra=[f"runtime.ema_decay={decay}", "optim.blr=0.05"])) == 0
    traj = RecordingEma.trajectory
    assert len(traj) == 1 + 2 * 3  # the initial weights, then 3 updates per epoch
    ema = {k: v.clone() for k, v in traj[0].items()}
    for w in traj[1:]:  # DeiT's / timm's EMA: ema = decay * ema + (1 - decay) * w after every update
        ema = {k: decay * ema[k] + (1 - decay) * w[k] for k in ema}
    raw = traj[-1]
    ckpt = read_checkpoint(out / "checkpoint-last.pth")
    for k in ema:
        assert torch.allclose(ckpt["model"][k].double(), ema[k], atol=1e-6), k
        assert torch.equal(ckpt["extra_state"]["model_raw"][k].double(), raw[k]), k
    assert any(not torch.allclose(ema[k], raw[k], atol=1e-4) for k in ema)  # the test can tell them apart
    metrics = read_result(out)["metrics"]
    root = synth_root / "imagenet"
    to_f32 = lambda sd: {k: v.float() for k, v in sd.items()}  # noqa: E731
    assert metrics["top1"] == pytest.approx(_top1(to_f32(ema), root), abs=1e-6)
    assert metrics["top1_raw"] == pytest.approx(_top1(to_f32(raw), root), abs=1e-6)
    # what --ckpt supervised:PATH loads is the EMA model
    enc, info = init_encoder(f"supervised:{out / 'checkpoint-last.pth'}", arch=None, img_size=32, num_classes=3,
                             global_pool="avg")
    assert info["kind"] == "supervised"
    assert torch.allclose(enc.blocks[5].mlp.fc1.weight.double(), ema["blocks.5.mlp.fc1.weight"], atol=1e-6)


def test_supervised_recipes_follow_table_11():
    want = {"supervised": (300, 0.1), "supervised_large": (200, 0.2), "supervised_huge": (200, 0.2)}
    for name, (epochs, drop_path) in want.items():
        cfg = resolved(load_recipe("in1k_finetune", name))
        assert (cfg["schedule"]["epochs"], cfg["model"]["drop_path"]) == (epochs, drop_path), name
        assert cfg["data"]["reprob"] == 0.0 and cfg["runtime"]["ema_decay"] == 0.9999 and cfg["optim"]["weight_decay"] == 0.3
        assert cfg["optim"]["betas"] == [0.9, 0.95] and cfg["schedule"]["warmup_epochs"] == 20
        assert cfg["schedule"]["batch_size"] * 32 == 4096 and cfg["mixup"]["mixup"] == 0.8 and cfg["mixup"]["cutmix"] == 1.0
    assert resolved(load_recipe("in1k_finetune", "paper_huge"))["model"]["drop_path"] == 0.3


def test_gradient_clipping_applies_to_the_trained_model_not_the_checkpointed_one(tmp_path):
    torch.manual_seed(0)
    trained, held = nn.Linear(3, 2), nn.Linear(3, 2)
    start = trained.weight.detach().clone(), trained.bias.detach().clone()
    opt = torch.optim.SGD(trained.parameters(), lr=1.0)
    engine = Engine(trained, opt, scheduler=None, run_dir=tmp_path, dist=DistInfo(), total_updates=1,
                    updates_per_epoch=1, clip_grad=1e-3, module=held, save_every=1)
    (trained(torch.randn(4, 3)) * 100).sum().backward()
    engine._optimizer_step()
    moved = torch.cat([(trained.weight - start[0]).flatten(), trained.bias - start[1]])
    assert math.isclose(moved.norm().item(), 1e-3, rel_tol=1e-4)
