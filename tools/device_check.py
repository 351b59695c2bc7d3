"""Device check: every task's training step and evaluation on one GPU, at its paper recipe's per-GPU batch.

Run it first when a session is lent a GPU (under 9 minutes on one H100 / H200):

    python tools/device_check.py --out benchmarks/RESULTS.md

What it runs, each for a few iterations through the project's own builders (so the CUDA paths that CPU tests never
reach run once: bf16 autocast, flash attention / SDPA, `torch.compile`, fp16 + GradScaler, pinned-memory loading,
NCCL):
- MAE pretraining, ViT-B and ViT-L (`pretrain/paper` recipe: 64 images per GPU, bf16, SDPA), `torch.compile` off
  and on: img/s, step time, peak memory (`torch.cuda.max_memory_allocated`) and model FLOPs utilisation (MFU):
  the FLOPs of one forward + backward counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions
  and SDPA; element-wise work is not counted, so MFU is a lower bound), divided by the step time and the GPU's
  dense bf16 peak (`PEAK_TFLOPS`). Random images: the cost of a step does not depend on the pixels.
- Pretraining fed from JPEGs through the real loader (`PretrainImages` + `epoch_loader`, `--workers` processes,
  pinned memory): loader-only img/s against the compute-only img/s says which one bounds it.
- Fine-tuning ViT-B (`in1k_finetune/base`: 32 per GPU, Mixup/CutMix, layer decay), the linear probe
  (`in1k_linear/base`: 512 per GPU, LARS) and their evaluation forward, on random images (labels drawn at random);
  k-NN (`knn/base`: 256 per batch) feature extraction and the vote over a random feature bank.
- ViTDet-B Mask R-CNN at 1024 px (`coco_det/paper`: 2 per GPU, fp16 + GradScaler) and UperNet-B at 512 px
  (`ade20k_seg/paper`: 2 per GPU, bf16) on synthetic scenes (`transfer.synth`) through their real datasets
  (LSJ / mmseg pipelines: the targets matter for the heads' cost), training step and evaluation.
- A 1-process NCCL group (init_process_group, all_reduce, checked).
It writes a section keyed by the GPU model into `--out` (atomically, replacing that GPU's section), with the
references' published speeds as ratios. `--tiny` runs the same code paths on CPU with tiny models, one step each
(what the test suite runs).
"""
import argparse
import contextlib
import datetime
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Dense bf16 tensor-core peak, TFLOP/s (NVIDIA's data sheets, SXM parts, without sparsity), by device-name substring.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
# What the references publish about their own runs (compared as ratios; the hardware differs, and is stated).
REFERENCES = {
    "vitdet_b": dict(train_s=0.314, infer_s=0.079, mem_gb=10.9,
                     source="detectron2 projects/ViTDet/README.md, Mask R-CNN ViT-B: train time 0.314 s/im, inference "
                     "0.079 s/im, train memory 10.9 GB, on 64 A100 GPUs at batch 64 (one image per GPU per iteration)"),
    "mae_vit_l": dict(hours=42.0, gpus=64, epochs=800, images=1281167,
                      source="facebookresearch/mae PRETRAIN.md: ViT-L 800 epochs in ~42 h on 64 V100 GPUs"),
}
MARK = "<!-- device-check: {} -->"
END = "<!-- /device-check: {} -->"


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def _recipe(family: str, name: str, sets: dict | None = None) -> dict:
    from benchmarks.config import load_recipe, resolved
    return resolved(load_recipe(family, name, sets or {}))


class Check:
    """Settings of one run of the check: the device, tiny or paper scale, steps."""

    def __init__(self, tiny: bool, device: str, steps: int, warmup: int, workers: int, tmp: Path):
        self.tiny, self.dev, self.steps, self.warmup, self.workers, self.tmp = tiny, device, steps, warmup, workers, tmp
        self.cuda = device.startswith("cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self):
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None

    def autocast(self, amp: str):
        from mae_core.engine import amp_context
        ctx, scaler = amp_context(self.dev, amp)  # CPU: no autocast (the project's rule)
        return ctx, scaler

    def timed(self, step, n_images: int) -> dict:
        """Warm-up steps, then `steps` timed ones: step time, img/s, peak memory."""
        self.reset_peak()
        for _ in range(self.warmup):
            step()
        self.sync()
        t0 = time.perf_counter()
        for _ in range(self.steps):
            step()
        self.sync()
        dt = (time.perf_counter() - t0) / self.steps
        return {"step_s": dt, "img_s": n_images / dt, "peak_gb": self.peak_gb()}


# ---- MAE pretraining --------------------------------------------------------------------
def _pretrain_cfg(c: Check, arch: str) -> dict:
    if c.tiny:
        return _recipe("pretrain", "smoke", {"model.arch": "vit_tiny_patch16", "model.img_size": 32,
                                             "model.decoder_depth": 1, "model.decoder_embed_dim": 64,
                                             "model.decoder_num_heads": 4, "schedule.batch_size": 2})
    return _recipe("pretrain", "paper", {"model.arch": arch})


def pretrain_step(c: Check, arch: str, compiled: bool) -> dict:
    from mae_core.distributed import DistInfo
    from mae_core.engine import adamw
    from mae_core.pretrain import build_mae, enable_fast_paths
    from timm.optim import param_groups_weight_decay
    cfg = _pretrain_cfg(c, arch)
    m, batch = cfg["model"], cfg["schedule"]["batch_size"]
    enable_fast_paths(DistInfo(device=c.dev))
    model = build_mae(m).to(c.dev)
    opt = adamw(param_groups_weight_decay(model, cfg["optim"]["weight_decay"]), lr=1e-4, betas=cfg["optim"]["betas"])
    autocast, _ = c.autocast(cfg["runtime"]["amp"])
    net = model
    out = {"arch": m["arch"], "batch": batch, "img_size": m["img_size"],
           "amp": cfg["runtime"]["amp"] if c.cuda else "fp32", "compile": compiled}
    if compiled:
        if not c.cuda:
            return {**out, "skipped": "torch.compile is not timed on CPU (tiny mode: compile time would dominate)"}
        net = torch.compile(model)
    x = torch.randn(batch, 3, m["img_size"], m["img_size"], device=c.dev)

    def step():
        with autocast():
            loss, _, _ = net(x, mask_ratio=m["mask_ratio"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if compiled:  # the first call compiles: timed apart
        t0 = time.perf_counter()
        step()
        c.sync()
        out["compile_s"] = time.perf_counter() - t0
    out.update(c.timed(step, batch))
    out["flops"] = step_flops(lambda: _fwd_bwd(model, x, m["mask_ratio"], autocast))
    peak = peak_tflops(torch.cuda.get_device_name()) if c.cuda else None
    out["tflops"] = out["flops"] / out["step_s"] / 1e12
    out["mfu"] = out["tflops"] / peak if peak else None
    opt.zero_grad(set_to_none=True)
    return out


def _fwd_bwd(model, x, mask_ratio, autocast):
    with autocast():
        loss, _, _ = model(x, mask_ratio=mask_ratio)
    loss.backward()


def step_flops(fn) -> float:
    """FLOPs of one call of `fn` by torch.utils.flop_counter.FlopCounterMode (matmul, conv, SDPA forward and
    backward; a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


# ---- pretraining from JPEGs through the real loader ---------------------------------------
def write_jpegs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> Path:
    """`n` photo-like JPEGs (smooth shading, edges, sensor noise: what makes decoding cost what real photos cost),
    quality 90, `size` (width, height) — ImageNet's typical 500 x 375 at paper scale."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.stack([rng.uniform(40, 200) + 40 * np.sin(rng.uniform(0.005, 0.08) * xx + rng.uniform(0.005, 0.08)
                                                            * yy + rng.uniform(0, 6.3)) for _ in range(3)], -1)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, min(w, h) / 3)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] += rng.uniform(-80, 80, 3)
        img += rng.normal(0, 12, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img_{i:05d}.jpg", quality=90)
    return folder


def pretrain_from_jpegs(c: Check) -> dict:
    from mae_core.data import PretrainImages, epoch_loader, pretrain_transform
    from mae_core.distributed import DistInfo
    from mae_core.engine import adamw
    from mae_core.pretrain import build_mae, enable_fast_paths
    from timm.optim import param_groups_weight_decay
    cfg = _pretrain_cfg(c, "vit_base_patch16")
    m, batch = cfg["model"], cfg["schedule"]["batch_size"]
    batches = 3 if c.tiny else 12  # the first batch of a pass is not timed (worker start-up)
    folder = write_jpegs(c.tmp / "jpegs", batch * batches, (64, 48) if c.tiny else (500, 375))
    data = PretrainImages(folder, pretrain_transform(cfg["data"]["augment"], m["img_size"]), seed=0)

    def loader():
        return epoch_loader(data, 0, batch, 0, 1, seed=0, num_workers=c.workers, pin_memory=c.cuda)
    def rate(batches, work=lambda x: None) -> tuple[int, float]:
        """Images/s after the first batch (which pays for starting the workers)."""
        it = iter(batches)
        work(next(it)[0])
        c.sync()
        t0, n = time.perf_counter(), 0
        for x, _ in it:
            work(x)
            n += len(x)
        c.sync()
        return n, n / (time.perf_counter() - t0)
    n, loader_img_s = rate(loader())  # loader only
    enable_fast_paths(DistInfo(device=c.dev))
    model = build_mae(m).to(c.dev)
    opt = adamw(param_groups_weight_decay(model, cfg["optim"]["weight_decay"]), lr=1e-4, betas=cfg["optim"]["betas"])
    autocast, _ = c.autocast(cfg["runtime"]["amp"])
    x0 = torch.randn(batch, 3, m["img_size"], m["img_size"], device=c.dev)

    def compute(x):
        with autocast():
            loss, _, _ = model(x, mask_ratio=m["mask_ratio"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    compute_only = c.timed(lambda: compute(x0), batch)
    _, fed_img_s = rate(loader(), lambda x: compute(x.to(c.dev, non_blocking=True)))
    out = {"arch": m["arch"], "batch": batch, "workers": c.workers, "images": n, "loader_img_s": loader_img_s,
           "compute_img_s": compute_only["img_s"], "fed_img_s": fed_img_s}
    out["bound"] = "loading" if out["loader_img_s"] < out["compute_img_s"] else "compute"
    return out


# ---- ImageNet protocols and k-NN --------------------------------------------------------
def classification(c: Check, protocol: str) -> dict:
    from transfer.classification.train import build_classifier, build_criterion, build_optimizer
    family = {"finetune": "in1k_finetune", "linear": "in1k_linear"}[protocol]
    cfg = _recipe(family, "smoke" if c.tiny else "base")
    arch = "vit_tiny_patch16" if c.tiny else "vit_base_patch16"
    size = cfg["model"]["img_size"]
    batch = 2 if c.tiny else cfg["schedule"]["batch_size"]
    classes = 8 if c.tiny else 1000
    model, _ = build_classifier(cfg, "scratch", arch, classes, protocol)
    model = model.to(c.dev)
    opt = build_optimizer(model, cfg, lr=1e-4)
    mixup, criterion = build_criterion(cfg, classes)
    autocast, _ = c.autocast(cfg["runtime"]["amp"])
    x = torch.randn(batch, 3, size, size, device=c.dev)
    y = torch.randint(0, classes, (batch,), device=c.dev)

    def step():
        model.train()
        xs, target = mixup(x, y) if mixup is not None else (x, y)
        with autocast():
            loss = criterion(model(xs), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    amp = cfg["runtime"]["amp"] if c.cuda else "fp32"
    out = {"arch": arch, "batch": batch, "img_size": size,
           "train": {**c.timed(step, batch), "note": f"{amp}, {size} px, random images"}}

    @torch.no_grad()
    def evaluate():
        model.eval()
        with autocast():
            model(x)
    out["eval"] = {**c.timed(evaluate, batch), "note": amp}
    return out


def knn(c: Check) -> dict:
    from transfer.classification.knn import knn_accuracy
    from transfer.encoder import init_encoder
    cfg = _recipe("knn", "smoke" if c.tiny else "base")
    arch = "vit_tiny_patch16" if c.tiny else "vit_base_patch16"
    size, batch = cfg["model"]["img_size"], (2 if c.tiny else cfg["schedule"]["batch_size"])
    model, _ = init_encoder("scratch", arch=arch, img_size=size, num_classes=0)
    model = model.to(c.dev).eval()
    x = torch.randn(batch, 3, size, size, device=c.dev)

    @torch.no_grad()
    def extract():  # fp32, as the knn task extracts
        model.forward_head(model.forward_features(x), pre_logits=True)
    out = {"arch": arch, "batch": batch, "extract": c.timed(extract, batch)}
    n_train, n_val, dim = (64, 8, 192) if c.tiny else (100_000, 10_000, 768)  # a bank as large as 100k images
    g = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(n_train, dim, generator=g), dim=1).to(c.dev)
    queries = torch.nn.functional.normalize(torch.randn(n_val, dim, generator=g), dim=1).to(c.dev)
    labels, qlabels = torch.randint(0, 1000, (n_train,), generator=g).to(c.dev), torch.randint(0, 1000, (n_val,))
    k = cfg["knn"]["k"]
    c.sync()
    t0 = time.perf_counter()
    knn_accuracy(bank, labels, queries, qlabels, k, cfg["knn"]["temperature"], 1000)
    c.sync()
    out["vote"] = {"train": n_train, "val": n_val, "k": k, "s": time.perf_counter() - t0}
    return out


# ---- COCO ViTDet and ADE20K UperNet on synthetic scenes --------------------------------
def synth_root(c: Check) -> Path:
    root = c.tmp / "synth"
    if not (root / "synth.json").exists():
        from transfer.synth import generate
        generate(root, n_train=8, n_val=8, img_size=64 if c.tiny else 256, seed=0, progress=False)  # >= 8 classes
    return root


def detection(c: Check) -> dict:
    from transfer.detection.data import collate
    from transfer.detection.model import detector_from_init, param_groups
    from transfer.detection.train import DetectionStep, _datasets
    from mae_core.engine import adamw
    from mae_core.hooks import Counter
    cfg = _recipe("coco_det", "smoke" if c.tiny else "paper", {"data.subset": None, "data.val_subset": None})
    arch = "vit_tiny_patch16" if c.tiny else "vit_base_patch16"
    batch = 1 if c.tiny else cfg["schedule"]["batch_size"]
    train_set, val_set = _datasets(cfg, synth_root(c) / "coco", True)
    model, _ = detector_from_init(cfg["model"], "scratch", arch, len(train_set.cat_ids))
    model = model.to(c.dev)
    o = cfg["optim"]
    opt = adamw(param_groups(model, o["weight_decay"], o["layer_decay"], len(model.backbone.net.blocks),
                             o["weight_decay_norm"], o["zero_decay"]), lr=1e-4)
    autocast, scaler = c.autocast(cfg["runtime"]["amp"])
    loss_of = DetectionStep(c.dev, Counter("skipped_samples"))
    train_batch = collate([train_set[i % len(train_set)] for i in range(batch)])

    def step():
        step_on(train_batch)

    def step_on(data):
        model.train()
        with autocast():
            loss, _ = loss_of(model, data)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
    amp = cfg["runtime"]["amp"] + " + GradScaler" if c.cuda and scaler is not None else "fp32"
    out = {"arch": arch, "batch": batch, "img_size": cfg["model"]["img_size"],
           "train": {**c.timed(step, batch), "note": f"{amp}, LSJ {cfg['model']['img_size']} px crops"}}
    images = [val_set[0][0].to(c.dev)]

    @torch.no_grad()
    def evaluate():  # fp32 (runtime.eval_amp none), as the task evaluates
        model.eval()
        model(images)
    out["eval"] = {**c.timed(evaluate, 1), "batch": 1, "note": f"fp32, image {list(images[0].shape[1:])}"}
    one = collate([train_set[0]])  # detectron2's published figures are at one image per GPU: the same here
    out["train_1"] = {**c.timed(lambda: step_on(one), 1), "batch": 1,
                      "note": "one image per GPU, as detectron2's figures"}
    return out


def segmentation(c: Check) -> dict:
    from transfer.segmentation.data import ADE20KDataset, read_num_classes
    from transfer.segmentation.model import total_loss
    from transfer.segmentation.train import build_segmenter, resolve_root
    from mae_core.engine import adamw
    cfg = _recipe("ade20k_seg", "smoke" if c.tiny else "paper", {"data.subset": None} if not c.tiny else None)
    arch = "vit_tiny_patch16" if c.tiny else "vit_base_patch16"
    m, crop = cfg["model"], cfg["model"]["img_size"]
    batch = 2 if c.tiny else cfg["schedule"]["batch_size"]  # BatchNorm after the 1x1 pooling needs 2 samples
    root, _ = resolve_root(synth_root(c) / "ade20k")
    classes = read_num_classes(root)
    train_set = ADE20KDataset(root, "train", cfg["data"], classes, train=True, crop=crop)
    val_set = ADE20KDataset(root, "val", cfg["data"], classes, train=False, crop=crop)
    model, _ = build_segmenter(m, crop, "scratch", arch, classes)
    model = model.to(c.dev)
    opt = adamw(model.param_groups(cfg["optim"]["weight_decay"], cfg["optim"]["layer_decay"]), lr=1e-4)
    autocast, _ = c.autocast(cfg["runtime"]["amp"])
    items = [train_set[(i % len(train_set), i)] for i in range(batch)]
    x = torch.stack([it[0] for it in items]).to(c.dev)
    y = torch.stack([it[1] for it in items]).to(c.dev)

    def step():
        model.train()
        with autocast():
            logits, aux = model(x)
        loss = total_loss(logits.float(), None if aux is None else aux.float(), y, m["aux_weight"],
                          m.get("avg_non_ignore", False))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    amp = cfg["runtime"]["amp"] if c.cuda else "fp32"
    out = {"arch": arch, "batch": batch, "crop": crop,
           "train": {**c.timed(step, batch), "note": f"{amp}, {crop} px crops"}}
    img = val_set[0][0].unsqueeze(0).to(c.dev)
    t = cfg["test"]

    def evaluate():  # fp32 sliding window, as the task evaluates
        model.eval()
        model.predict_logits(img, t["mode"], t["crop_size"], t["stride"])
    out["eval"] = {**c.timed(evaluate, 1), "batch": 1,
                   "note": f"fp32, {t['mode']} {t['crop_size']}/{t['stride']} on a {list(img.shape[2:])} image"}
    return out


# ---- one-process NCCL group ---------------------------------------------------------------
def process_group(c: Check) -> dict:
    import socket
    import torch.distributed as dist
    backend = "nccl" if c.cuda else "gloo"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        t = torch.arange(1 << 20, dtype=torch.float32, device=c.dev)
        c.sync()
        t0 = time.perf_counter()
        dist.all_reduce(t)
        c.sync()
        ok = bool(torch.equal(t, torch.arange(1 << 20, dtype=torch.float32, device=c.dev)))
        return {"backend": backend, "world": dist.get_world_size(), "all_reduce_ok": ok,
                "all_reduce_ms": 1e3 * (time.perf_counter() - t0)}
    finally:
        dist.destroy_process_group()


# ---- report -----------------------------------------------------------------------------
def _f(v, spec=".1f", none="—"):
    return none if v is None else format(v, spec)


def report(gpu: str, env: dict, results: dict) -> str:
    lines = [MARK.format(gpu), f"## Device check: {gpu}", "",
             f"{env['when']} · torch {env['torch']} · CUDA {env['cuda']} · {env['host']} · "
             f"`python tools/device_check.py{' --tiny' if env['tiny'] else ''}` ({env['wall_s']:.0f} s). "
             "Dense bf16 peak used for MFU: "
             f"{_f(env['peak_tflops'], '.0f')} TFLOP/s. Each time is the mean of the timed steps after warm-up.", ""]
    lines += ["| part | model | batch | img/s | step (s) | peak mem (GB) | notes |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | | | | | | FAILED: {r['error']} |")
            continue
        if name == "pretrain from JPEGs":
            lines.append(f"| {name} | {r['arch']} | {r['batch']} | {r['fed_img_s']:.1f} | | | loader alone "
                         f"{r['loader_img_s']:.1f} img/s with {r['workers']} workers, compute alone "
                         f"{r['compute_img_s']:.1f} img/s: **{r['bound']}-bound** ({r['images']} JPEGs) |")
        elif name.startswith("pretrain ") and "skipped" in r:
            lines.append(f"| {name} | {r['arch']} | {r['batch']} | | | | {r['skipped']} |")
        elif name.startswith("pretrain "):
            note = (f"{r['amp']}, compile {'on' if r['compile'] else 'off'}"
                    + (f" (compiled in {r['compile_s']:.0f} s)" if r.get("compile_s") else "")
                    + f"; {r['flops'] / 1e9:,.1f} GFLOP/step (FlopCounterMode, fwd + bwd), {r['tflops']:.2f} TFLOP/s"
                    + (f", MFU {100 * r['mfu']:.1f} %" if r.get("mfu") is not None else ""))
            lines.append(f"| {name} | {r['arch']} | {r['batch']} | {r['img_s']:.1f} | {r['step_s']:.3f} | "
                         f"{_f(r['peak_gb'], '.2f')} | {note} |")
        elif name == "k-NN":
            e, v = r["extract"], r["vote"]
            lines.append(f"| {name} features | {r['arch']} | {r['batch']} | {e['img_s']:.1f} | {e['step_s']:.3f} | "
                         f"{_f(e['peak_gb'], '.2f')} | fp32 |")
            lines.append(f"| {name} vote | | | | {v['s']:.3f} | | {v['val']} queries x {v['train']} bank, k {v['k']} |")
        elif name == "NCCL group":
            lines.append(f"| {name} | | | | | | {r['backend']}, world {r['world']}, all_reduce of 4 MiB "
                         f"{'correct' if r['all_reduce_ok'] else 'WRONG'} in {r['all_reduce_ms']:.1f} ms |")
        else:
            for part in ("train", "train_1", "eval"):
                if part not in r:
                    continue
                p = r[part]
                lines.append(f"| {name} {part} | {r['arch']} | {p.get('batch', r['batch'])} | {p['img_s']:.1f} | "
                             f"{p['step_s']:.3f} | {_f(p['peak_gb'], '.2f')} | {p.get('note', '')} |")
    lines += ["", *(["(tiny mode on CPU: the code paths ran; the numbers are not comparable with anything)", ""]
                    if env["tiny"] else comparisons(gpu, results)), END.format(gpu), ""]
    return "\n".join(lines)


def comparisons(gpu: str, results: dict) -> list[str]:
    out = ["References on their hardware (ratios ours / theirs; not like for like: different GPUs, and their "
           "numbers are per GPU of a many-GPU run):", ""]
    det = results.get("ViTDet-B 1024 px", {})
    if "train_1" in det:
        ref, one, ev = REFERENCES["vitdet_b"], det["train_1"], det["eval"]
        out.append(f"- ViTDet-B at one image per GPU: training {one['step_s']:.3f} s/im on one {gpu} vs "
                   f"{ref['train_s']} on an A100: x{one['step_s'] / ref['train_s']:.2f}; peak memory "
                   f"{_f(one['peak_gb'], '.1f')} GB vs {ref['mem_gb']} GB: "
                   f"x{(one['peak_gb'] or 0) / ref['mem_gb']:.2f}; "
                   f"inference {ev['step_s']:.3f} s/im vs {ref['infer_s']}: x{ev['step_s'] / ref['infer_s']:.2f} "
                   f"({ref['source']}; ours on synthetic scenes with few instances, theirs on COCO).")
    pre = next((r for n, r in results.items() if n.startswith("pretrain ViT-L") and "img_s" in r), None)
    if pre:
        ref = REFERENCES["mae_vit_l"]
        theirs = ref["epochs"] * ref["images"] / (ref["hours"] * 3600) / ref["gpus"]  # img/s per V100
        hours = ref["epochs"] * ref["images"] / pre["img_s"] / 3600
        out.append(f"- MAE ViT-L pretraining: {pre['img_s']:.0f} img/s on one {gpu} (compile "
                   f"{'on' if pre['compile'] else 'off'}) vs {theirs:.0f} img/s per V100 implied by {ref['source']}: "
                   f"x{pre['img_s'] / theirs:.1f} per GPU (theirs: fp16 on V100s, data loading included); "
                   "800 epochs of "
                   f"ImageNet-1K would take {hours:.0f} h on this "
                   f"one GPU, {hours / 8:.1f} h on 8 (compute only, data loading aside).")
    return [*out, ""]


def write_section(path: Path, gpu: str, section: str) -> Path:
    """Put `section` into `path`, replacing this GPU's section if there is one; atomic."""
    from mae_core.atomic import atomic_write
    text = path.read_text() if path.exists() else "# Measured results\n"
    pattern = re.compile(re.escape(MARK.format(gpu)) + r".*?" + re.escape(END.format(gpu)) + r"\n?", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


PARTS = [  # (name, function, args); a part that fails is reported and the others still run
    ("pretrain ViT-B", pretrain_step, ("vit_base_patch16", False)),
    ("pretrain ViT-B compiled", pretrain_step, ("vit_base_patch16", True)),
    ("pretrain ViT-L", pretrain_step, ("vit_large_patch16", False)),
    ("pretrain ViT-L compiled", pretrain_step, ("vit_large_patch16", True)),
    ("pretrain from JPEGs", pretrain_from_jpegs, ()),
    ("fine-tune", classification, ("finetune",)),
    ("linear probe", classification, ("linear",)),
    ("k-NN", knn, ()),
    ("ViTDet-B 1024 px", detection, ()),  # train_1: at one image per GPU, as detectron2's published figures
    ("UperNet-B 512 px", segmentation, ()),
    ("NCCL group", process_group, ()),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"),
                   help="results file to write the section to")
    p.add_argument("--tiny", action="store_true", help="tiny models, one step each, on CPU (what the tests run)")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per part (default 10; 1 with --tiny)")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: 8; 1 with --tiny)")
    p.add_argument("--only", default=None, help="comma-separated part names to run (default: all)")
    args = p.parse_args(argv)
    device = args.device or ("cpu" if args.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("device check: no CUDA device here (torch.cuda.is_available() is False); --tiny runs it on CPU",
              file=sys.stderr)
        return 1
    t0 = time.time()
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU tiny ({platform.machine()})"
    results = {}
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        c = Check(args.tiny, device, args.steps or (1 if args.tiny else 10), 0 if args.tiny else 3,
                  args.workers if args.workers is not None else (1 if args.tiny else 8), Path(tmp))
        only = set(args.only.split(",")) if args.only else None
        for name, fn, fargs in PARTS:
            if only and name not in only:
                continue
            t1 = time.time()
            try:
                results[name] = fn(c, *fargs)
            except Exception as e:  # reported in the table and the exit status; the next part still runs
                results[name] = {"error": " ".join(f"{type(e).__name__}: {e}".split())[:300]}
                traceback.print_exc()
            finally:
                if c.cuda:
                    torch.cuda.empty_cache()
            status = f"FAILED {results[name]['error']}" if "error" in results[name] else "ok"
            print(f"[{time.time() - t0:5.0f}s] {name}: {status} ({time.time() - t1:.1f}s)", flush=True)
    env = {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "torch": torch.__version__, "cuda": torch.version.cuda if device.startswith("cuda") else "none",
           "host": platform.node() or "host",
           "tiny": args.tiny, "wall_s": time.time() - t0,
           "peak_tflops": peak_tflops(gpu) if device.startswith("cuda") else None}
    write_section(Path(args.out), gpu, report(gpu, env, results))
    failed = [n for n, r in results.items() if "error" in r]
    print(f"device check: {len(results) - len(failed)} of {len(results)} parts ran; section '{gpu}' in {args.out}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
