"""Every encoder variant the formats registry reads x every downstream task (issue 20): one tiny run of a few steps
through `mae-bench run` (benchmarks.cli.main, the command line's own entry point) per pair. Each checkpoint is
built with its method's own model code (timm for timm / DeiT / MoCo v3's encoder, tests/reference for DINOv2,
DINO and BEiT), saved as its release saves it, and shared by the whole matrix. Each run's record must name the
format and the variant, list what the loader left out, hold the task's metrics; the weights a run keeps frozen
must equal the reference model's tensors, the ones it trains must be finite."""
import argparse
import csv
import math
import warnings
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn as nn
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from benchmarks.cli import main
from benchmarks.tasks import get_task
from results.record import read_result, sha256_file
from tests.reference import beit_vit, dinov2_vit, ibot_vit
from tests.test_formats import randomize
from tests.test_formats_beit import LN

TASKS = ("knn", "in1k_linear", "in1k_partial", "in1k_finetune", "coco_det", "ade20k_seg")


@dataclass(frozen=True)
class Variant:
    name: str
    fmt: str  # the format (and init kind) the record must name
    patch: int
    arch: dict  # init.arch_spec entries the checkpoint must resolve to
    unused: frozenset  # keys the format leaves out of the encoder, all in init.unused
    pool: str = "token"  # the classification tasks' model.global_pool
    filename: str = "ckpt.pth"
    grid: int = 2  # the checkpoint's patch grid (side), at which the classification tasks run

    @property
    def size(self) -> int:
        return self.grid * self.patch


HEAD = frozenset({"head.weight", "head.bias"})
DEPTH = 4  # UperNet reads four blocks' maps (with fewer blocks its default out_indices repeat a block)
VARIANTS = [
    Variant("timm_layer_scale", "timm", 16, dict(layer_scale=True, class_token=True), HEAD),
    Variant("timm_no_class_token", "timm", 16, dict(class_token=False, reg_tokens=0), HEAD, pool="avg"),
    Variant("deit_distilled", "deit", 16, dict(dist_token=True), HEAD | {"head_dist.weight", "head_dist.bias"}),
    Variant("dinov2_registers", "dinov2", 14, dict(layer_scale=True, reg_tokens=2, no_embed_class=True),
            frozenset({"mask_token"})),
    Variant("dinov2_swiglu", "dinov2", 14, dict(swiglu=True, layer_scale=True), frozenset({"mask_token"})),
    Variant("beit", "beit", 16, dict(beit=True, rel_pos_bias=True, abs_pos=False, layer_scale=True, qkv_bias=True,
                                     num_heads=2),
            frozenset({"rel_pos_bias.relative_position_bias_table", "mask_token", "lm_head.weight"}),
            grid=4),  # coco_det's global block attends a 4 x 4 grid; BEiT's cubic table resize needs more than 2 x 2
    Variant("moco_v3", "moco_v3", 16, dict(num_heads=12, layer_scale=False, reg_tokens=0),
            frozenset({"momentum_encoder.cls_token", "predictor.0.weight", "base_encoder.head.0.weight"}),
            filename="vit-s-300ep.pth.tar"),
    Variant("dino", "dino", 16, dict(layer_scale=False, reg_tokens=0), frozenset({"head.last_layer.weight_g"}),
            filename="checkpoint.pth"),
]
BY_NAME = {v.name: v for v in VARIANTS}


def _timm(**kw) -> nn.Module:
    return randomize(VisionTransformer(img_size=32, patch_size=16, embed_dim=64, depth=DEPTH, num_heads=1, **kw))


def _build(v: Variant) -> tuple[dict, dict]:
    """(the release file's content, reference tensors by the encoder's timm name): the tensors a loaded encoder
    must hold, taken from the method's own model."""
    if v.name == "timm_layer_scale":
        ref = _timm(num_classes=10, init_values=0.1)
        return ref.state_dict(), {"blocks.0.ls1.gamma": ref.blocks[0].ls1.gamma, "cls_token": ref.cls_token,
                                  "blocks.0.attn.qkv.weight": ref.blocks[0].attn.qkv.weight}
    if v.name == "timm_no_class_token":
        ref = _timm(num_classes=10, class_token=False, global_pool="avg")
        return ref.state_dict(), {"pos_embed": ref.pos_embed, "blocks.0.attn.qkv.weight": ref.blocks[0].attn.qkv.weight}
    if v.name == "deit_distilled":
        ref = randomize(VisionTransformerDistilled(img_size=32, patch_size=16, embed_dim=64, depth=DEPTH, num_heads=1,
                                                   num_classes=10))
        return {"model": ref.state_dict()}, {"reg_token": ref.dist_token, "cls_token": ref.cls_token,  # the token
                                             "pos_embed": ref.pos_embed,  # rides in timm's register slot
                                             "blocks.0.attn.qkv.weight": ref.blocks[0].attn.qkv.weight}
    if v.name.startswith("dinov2"):
        regs, ffn = (2, "mlp") if v.name == "dinov2_registers" else (0, "swiglufused")
        ref = randomize(dinov2_vit.DinoVisionTransformer(img_size=28, patch_size=14, embed_dim=64, depth=DEPTH,
                                                         num_heads=1, init_values=1.0, num_register_tokens=regs,
                                                         ffn_layer=ffn))
        want = {"blocks.0.ls1.gamma": ref.blocks[0].ls1.gamma, "patch_embed.proj.weight": ref.patch_embed.proj.weight,
                "blocks.0.attn.qkv.weight": ref.blocks[0].attn.qkv.weight}
        if regs:
            want["reg_token"] = ref.register_tokens
        else:
            want["blocks.0.mlp.fc1.weight"] = ref.blocks[0].mlp.w12.weight  # timm's SwiGLUPacked: w12 as fc1
        return ref.state_dict(), want
    if v.name == "beit":  # a pretraining release: shared table, layer scale, q / v biases, no pos_embed
        ref = randomize(beit_vit.VisionTransformerForMaskedImageModeling(
            img_size=64, patch_size=16, vocab_size=16, embed_dim=64, depth=DEPTH, num_heads=2, qkv_bias=True,
            norm_layer=LN, init_values=0.1, use_abs_pos_emb=False, use_shared_rel_pos_bias=True))
        return {"model": ref.state_dict()}, {
            "blocks.0.attn.relative_position_bias_table": ref.rel_pos_bias.relative_position_bias_table,
            "blocks.0.attn.q_bias": ref.blocks[0].attn.q_bias, "blocks.0.gamma_1": ref.blocks[0].gamma_1,
            "blocks.0.attn.qkv.weight": ref.blocks[0].attn.qkv.weight}
    if v.name == "moco_v3":  # moco-v3's builder and main_moco.py, as tests/test_formats.py's MoCo v3 test
        def encoder(seed):
            vit = randomize(VisionTransformer(img_size=32, patch_size=16, embed_dim=48, depth=DEPTH, num_heads=12,
                                              num_classes=0), seed)
            vit.head = nn.Sequential(nn.Linear(48, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
            return vit
        wrapper = nn.Module()
        wrapper.base_encoder, wrapper.momentum_encoder = encoder(0), encoder(5)
        wrapper.predictor = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
        base = wrapper.base_encoder
        return ({"epoch": 300, "arch": "vit_small", "optimizer": {}, "scaler": {},
                 "state_dict": {f"module.{k}": t for k, t in wrapper.state_dict().items()}},
                {"blocks.0.attn.qkv.weight": base.blocks[0].attn.qkv.weight, "cls_token": base.cls_token})
    if v.name == "dino":  # main_dino.py's checkpoint: teacher and (DDP-wrapped) student, head and loss centre
        backbone = randomize(ibot_vit.VisionTransformer(img_size=[32], patch_size=16, embed_dim=64, depth=DEPTH,
                                                        num_heads=1, qkv_bias=True))
        teacher = ibot_vit.MultiCropWrapper(backbone, ibot_vit.DINOHead(64, 16))
        student = {f"module.{k}": t + 1 for k, t in teacher.state_dict().items()}
        return ({"student": student, "teacher": teacher.state_dict(), "optimizer": {}, "epoch": 3,
                 "args": argparse.Namespace(arch="vit_small", patch_size=16),
                 "dino_loss": {"center": torch.zeros(1, 16)}},
                {"blocks.0.attn.qkv.weight": backbone.blocks[0].attn.qkv.weight, "cls_token": backbone.cls_token})
    raise AssertionError(v.name)


@dataclass
class Ckpt:
    path: str
    reference: dict = field(repr=False)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict:
    """Every variant's release file, written once for the whole matrix."""
    folder = tmp_path_factory.mktemp("variants")
    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm")  # DINO's head uses the old weight_norm
        for v in VARIANTS:
            content, reference = _build(v)
            path = folder / v.name / v.filename
            path.parent.mkdir()
            torch.save(content, path)
            out[v.name] = Ckpt(str(path), {k: t.detach().clone() for k, t in reference.items()})
    return out


def _argv(task: str, v: Variant, ckpt: str, data, out) -> list[str]:
    from tests.test_classification import TINY as CLS
    from tests.test_detection_train import TINY as DET
    from tests.test_segmentation import TINY as SEG
    if task == "coco_det":  # ViTDet keeps pos_embed at a grid of the pretraining size: a multiple of 14 and 16
        sets = [*DET, "schedule.epochs=1", f"model.pretrain_img_size={v.size if v.patch == 16 else 112}",
                "data.subset=4", "data.val_subset=2"]
    elif task == "ade20k_seg":
        sets = [*SEG, "schedule.iters=1", "schedule.eval_interval=1", f"model.img_size={v.size}",
                f"data.scale=(128, {v.size})", f"data.test_scale=(128, {v.size})", f"test.crop_size={v.size}",
                f"test.stride={v.size // 2}", "data.subset=4", "data.val_subset=2"]
    else:
        sets = [*CLS, "schedule.epochs=1", f"model.img_size={v.size}", f"model.global_pool={v.pool!r}"]
        if task == "in1k_partial":
            sets.append("blocks=1")
        if task == "knn":
            sets = [f"model.img_size={v.size}", f"model.global_pool={v.pool!r}", "schedule.batch_size=8",
                    "runtime.device='cpu'", "data.num_workers=0"]
    return ["run", "--task", task, "--recipe", "smoke", "--ckpt", ckpt, "--data", str(data), "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


@pytest.mark.parametrize("variant", [v.name for v in VARIANTS])
@pytest.mark.parametrize("task", TASKS)
def test_every_task_runs_on_every_variant(task, variant, ckpts, synth_root, tmp_path, capsys):
    v, ckpt = BY_NAME[variant], ckpts[variant]
    out = tmp_path / "run"
    code = main(_argv(task, v, ckpt.path, synth_root, out))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rec = read_result(out)
    init, metrics = rec["init"], rec["metrics"]
    assert init["format"] == init["kind"] == v.fmt and init["sha256"] == sha256_file(ckpt.path)
    spec = init["arch_spec"]
    assert {k: spec[k] for k in v.arch} == v.arch and spec["patch_size"] == v.patch and rec["arch"] == spec["name"]
    unused = init["unused"]
    assert unused["count"] == len(unused["keys"]) and v.unused <= set(unused["keys"]), sorted(unused["keys"])
    assert set(get_task(task).metrics) <= set(metrics) and all(math.isfinite(x) for x in metrics.values())
    if task == "knn":  # nothing trained: every validation image scored with the loaded encoder
        with open(out / "predictions.csv") as f:
            assert len(list(csv.DictReader(f))) == rec["dataset"]["val_images"] > 0
        return
    trained = torch.load(out / ("model_final.pth" if task in ("coco_det", "ade20k_seg") else "checkpoint-last.pth"),
                         weights_only=True)["model"]
    assert all(bool(torch.isfinite(t).all()) for t in trained.values() if t.is_floating_point())
    if task == "in1k_linear":  # the encoder is frozen: it holds the reference model's tensors after training
        for key, want in ckpt.reference.items():
            assert torch.equal(trained[key], want), key
    elif task == "in1k_partial":  # the last block trains; the stem and the first block stay the reference's
        for key, want in ckpt.reference.items():
            if not key.startswith(f"blocks.{DEPTH - 1}."):
                assert torch.equal(trained[key], want), key
    elif task == "in1k_finetune":  # everything trains
        assert any(not torch.equal(trained[k], want) for k, want in ckpt.reference.items()
                   if k.startswith("blocks."))
    elif task == "coco_det":  # ViTDet carries patch tokens only; the variant's block parameters enter the backbone
        assert "cls_token" in unused["keys"] or not spec["class_token"]
        assert ("reg_token" in unused["keys"]) == bool(spec["reg_tokens"])
        assert ("dist_token" in unused["keys"]) == spec["dist_token"]
        # BEiT's tables lose their class-token rows (ViTDet has no class token)
        assert any(k.endswith("relative_position_bias_table[-3:]") for k in unused["keys"]) == spec["rel_pos_bias"]
        for key in ckpt.reference:
            if key.startswith("blocks."):
                assert "backbone.net." + key.replace("gamma_1", "ls1.gamma") in trained, key


# ---- model.num_heads: the heads no shape reveals, set from the recipe -------------------------------------------
def test_the_recipe_sets_the_heads_a_checkpoint_cannot_say(synth_root, tmp_path, capsys):
    """A researcher's own size trained with 4 heads of 32: the head-dim-64 convention would give 2 heads (other
    features); `--set model.num_heads=4` gives the reference's features and is recorded. A number that does not
    divide the width, or one --arch contradicts, is one line and no result; a non-positive one fails at the recipe."""
    from mae_core.errors import MaeBenchError
    from tests.test_formats import close, images
    from transfer.detection.model import vit_from_init
    from transfer.encoder import init_encoder
    ref = randomize(VisionTransformer(img_size=32, patch_size=8, embed_dim=128, depth=2, num_heads=4, num_classes=0))
    path = tmp_path / "mine.pth"
    torch.save(ref.state_dict(), path)
    with torch.no_grad():
        want = ref.forward_features(images(32))
        for heads, same in ((None, False), (4, True)):
            model, info = init_encoder(str(path), arch=None, img_size=32, num_classes=0, num_heads=heads)
            got = model.eval().forward_features(images(32))
            assert info["arch_spec"]["num_heads"] == (heads or 2)
            assert torch.allclose(got, want, atol=1e-5) == same
        close(got, want)
    vit, _ = vit_from_init(str(path), None, dict(img_size=32, pretrain_img_size=32, window_size=2, drop_path=0.0,
                                                  use_rel_pos=False, num_heads=4))
    assert vit.blocks[0].attn.num_heads == 4  # ViTDet's backbone takes the same heads

    def run(name, *sets, arch=None):
        out = tmp_path / name
        argv = ["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(path), "--data", str(synth_root),
                "--out", str(out), *[a for s in ("model.img_size=32", "runtime.device='cpu'", *sets)
                                     for a in ("--set", s)]]
        code = main(argv + (["--arch", arch] if arch else []))
        return code, out, capsys.readouterr().err.strip().splitlines()
    code, out, _ = run("four", "model.num_heads=4")
    rec = read_result(out)
    assert code == 0 and rec["init"]["arch_spec"]["num_heads"] == 4 and rec["arch"] == "vit_w128_d2_h4_patch8"
    for name, sets, arch, words in (("three", ["model.num_heads=3"], None, "not divisible into 3 heads"),
                                    ("both", ["model.num_heads=4"], "vit_w128_d2_h2_patch8", "has 2 heads but"),
                                    ("zero", ["model.num_heads=0"], None, "model.num_heads=0 is invalid")):
        code, out, err = run(name, *sets, arch=arch)
        assert code == 1 and len(err) == 1 and words in err[0], err
        assert not (out / "result.json").exists()
    with pytest.raises(MaeBenchError, match="has 12 heads but model.num_heads=4"):  # scratch: --arch names them
        init_encoder("scratch", arch="vit_base_patch16", img_size=32, num_classes=0, num_heads=4)


@pytest.mark.parametrize("task", TASKS)
def test_every_encoder_task_has_the_heads_key(task):
    from benchmarks.config import load_recipe
    cfg = load_recipe(task, "paper", ["model.num_heads=8"])
    assert cfg.model.num_heads == 8 and load_recipe(task, "paper").model.num_heads is None
