"""Decode + augmentation throughput of the pretraining input pipeline, in images/s per core.

The pipeline is the pretraining recipe's (`data.augment`, `data.crop_scale`, `model.img_size`: random-size crop,
bicubic, flip, normalise) on real-size JPEGs, with three decoders:

- `pil`: PIL full decode, then the torchvision transforms pretraining runs (`mae_core.data.pretrain_transform`);
- `pil_draft`: PIL draft mode: the crop box is drawn on the full size from the header, then libjpeg decodes at
  the smallest DCT scale (1/2, 1/4, 1/8) that still leaves the crop at least the output size. It differs from
  `pil` only where a scale < 1 is used: that part of the downscaling is libjpeg's scaled IDCT instead of PIL's
  bicubic filter, and the box is kept in fractional coordinates. A crop that needs full size decodes identically.
- `tv`: `torchvision.io.decode_jpeg`, then the same crop / flip / normalise on uint8 tensors (bicubic, antialias).

Each sample's crop and flip come from the same per-sample seed in every decoder, so their outputs can be compared
(the `diff vs pil` column). One process per core, each timing every image; figures are per process (= per core).

    python -m tools.data_speed [--data DIR] [--recipe base|smoke|PATH] [--set KEY=VALUE ...]   # tools/recipes/bench_data/
"""
import datetime
import math
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mae_core.errors import MaeBenchError

from .host import cpu_model, describe_cpu, load_average, load_warning

DECODERS = ("pil", "pil_draft", "tv")
TARGET = 400  # img/s per core: 16 cores then feed ~6.4k img/s, about what one H100 takes in ViT-B pretraining (~7k)
JPEG_SUFFIXES = (".jpg", ".jpeg")


# ---- images ---------------------------------------------------------------------------------
def synth_jpegs(folder: Path, n: int, size=(500, 375), seed: int = 0, quality: int = 90) -> list[Path]:
    """`n` photo-like JPEGs (smooth shading, textures, edges, sensor noise) of `size` (width, height)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(n):
        img = np.empty((h, w, 3), np.float32)
        for c in range(3):
            fx, fy, phase = rng.uniform(0.005, 0.08, 2).tolist() + [rng.uniform(0, 6.3)]
            img[..., c] = (rng.uniform(40, 200) + 40 * np.sin(fx * xx + fy * yy + phase)
                           + rng.uniform(-60, 60) * xx / w + rng.uniform(-60, 60) * yy / h)
        for _ in range(8):  # blobs with hard edges
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, min(w, h) / 3)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] += rng.uniform(-80, 80, 3)
        img += rng.normal(0, 12, img.shape)  # noise: what makes real JPEGs expensive to decode
        path = folder / f"synth_{i:04d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=quality)
        paths.append(path)
    return paths


def find_jpegs(folder, n: int) -> list[Path]:
    """The first `n` JPEG files under `folder` (sorted), each checked to decode."""
    from mae_core.images import open_rgb
    folder = Path(folder)
    if not folder.is_dir():
        raise MaeBenchError(f"bench data: --data {folder} is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())[:n]
    if not paths:
        raise MaeBenchError(f"bench data: no JPEG files (.jpg, .jpeg) under {folder}")
    for p in paths:
        open_rgb(p)  # a corrupt file is one line here, not a worker's traceback
    return paths


# ---- the three pipelines --------------------------------------------------------------------
def pipelines(img_size: int, crop_scale, augment: str = "rrc") -> dict:
    """name -> f(path, seed) -> normalised [3, img_size, img_size] tensor."""
    import torch
    import torchvision.transforms.functional as TF
    from PIL import Image
    from torchvision import io as tvio
    from torchvision import transforms as T

    from mae_core.data import pretrain_transform
    from mae_core.images import IMAGENET_MEAN, IMAGENET_STD, open_rgb

    if augment != "rrc":
        raise MaeBenchError(f"bench data times the paper's data.augment='rrc'; the pretraining recipe has {augment!r}")
    reference = pretrain_transform("rrc", img_size, crop_scale)
    scale, ratio = tuple(crop_scale), (3 / 4, 4 / 3)  # RandomResizedCrop's defaults, as pretrain_transform uses
    out = (img_size, img_size)

    def params(img):  # the same draws, in the same order, as RandomResizedCrop then RandomHorizontalFlip
        box = T.RandomResizedCrop.get_params(img, scale, ratio)
        return box, bool(torch.rand(1) < 0.5)

    def finish(x):
        return TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)

    def pil(path, seed):
        img = open_rgb(path)
        torch.manual_seed(seed)
        return reference(img)

    def pil_draft(path, seed):
        with Image.open(path) as im:
            torch.manual_seed(seed)
            (i, j, h, w), flip = params(im)  # on the header's full size
            full_w, full_h = im.size
            need = (math.ceil(full_w * img_size / w), math.ceil(full_h * img_size / h))  # the crop >= the output
            if min(full_w // need[0], full_h // need[1]) >= 2:  # else libjpeg has no smaller scale to offer
                im.draft("RGB", need)
            sx, sy = im.size[0] / full_w, im.size[1] / full_h
            img = im.convert("RGB")
        if sx == 1 and sy == 1:  # full size: exactly what RandomResizedCrop does
            img = img.crop((j, i, j + w, i + h)).resize(out, Image.BICUBIC)
        else:
            img = img.resize(out, Image.BICUBIC, box=(j * sx, i * sy, (j + w) * sx, (i + h) * sy))
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return finish(TF.to_tensor(img))

    def tv(path, seed):
        x = tvio.decode_jpeg(tvio.read_file(str(path)), mode=tvio.ImageReadMode.RGB)
        torch.manual_seed(seed)
        (i, j, h, w), flip = params(x)
        x = TF.resized_crop(x, i, j, h, w, list(out), T.InterpolationMode.BICUBIC, antialias=True)
        if flip:
            x = TF.hflip(x)
        return finish(x.float().div_(255))

    return {"pil": pil, "pil_draft": pil_draft, "tv": tv}


def differences(paths, funcs: dict, n: int = 8) -> dict:
    """Mean and max |output - pil's output| on 0-255 pixel values over the first `n` images, per decoder."""
    from mae_core.images import IMAGENET_STD
    std = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1) * 255
    res = {}
    for name, fn in funcs.items():
        d = [np.abs((fn(p, k) - funcs["pil"](p, k)).numpy()) * std for k, p in enumerate(paths[:n])]
        res[name] = (float(np.mean([x.mean() for x in d])), float(max(x.max() for x in d)))
    return res


# ---- timing ---------------------------------------------------------------------------------
WARMUP = 4  # untimed images per process before each measurement


def _worker(paths, pipe_args, warmup, barrier, tasks, results):
    import torch
    torch.set_num_threads(1)  # one core per process
    try:
        funcs = pipelines(*pipe_args)
        while (task := tasks.get()) is not None:
            name, passes = task
            fn = funcs[name]
            for k in range(warmup):
                fn(paths[k % len(paths)], k)
            barrier.wait()
            t0, count = time.perf_counter(), 0
            for p in range(passes):
                for k, path in enumerate(paths):
                    fn(path, p * len(paths) + k)
                    count += 1
            results.put((name, count / (time.perf_counter() - t0)))
    except Exception as e:  # noqa: BLE001 - reported by the parent as one line
        barrier.abort()
        results.put(("error", f"{type(e).__name__}: {e}"))


def time_decoders(paths, pipe_args, decoders, procs: int, repeats: int, passes: int, warmup: int = WARMUP):
    """{decoder: [img/s per core, one value per repeat]} (each the mean over `procs` concurrent processes),
    and the load average before, after each repeat."""
    ctx = mp.get_context("spawn")  # no fork of a process that may hold OpenMP threads
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    queues = [ctx.Queue() for _ in range(procs)]
    loads = [load_average()]
    workers = [ctx.Process(target=_worker, args=(paths, pipe_args, warmup, barrier, q, results), daemon=True)
               for q in queues]
    for w in workers:
        w.start()
    runs = {d: [] for d in decoders}
    try:
        for _ in range(repeats):
            for name in decoders:  # interleaved: load drifts hit every decoder alike
                for q in queues:
                    q.put((name, passes))
                got = [results.get(timeout=600) for _ in workers]
                errors = [msg for kind, msg in got if kind == "error"]
                if errors:
                    raise MaeBenchError(f"bench data: a worker failed: {errors[0]}")
                runs[name].append(statistics.mean(rate for _, rate in got))
            loads.append(load_average())
    finally:
        for q in queues:
            q.put(None)
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
    return runs, loads


# ---- the command ----------------------------------------------------------------------------
def _plain(cfg) -> dict:
    return dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)


def measure(cfg) -> dict:
    """Measure the recipe's decoders; returns settings, machine, rows and loads."""
    from mae_core.threads import available_cores

    from benchmarks.config import load_recipe
    c = _plain(cfg)
    decoders = list(c["decoders"])
    bad = [d for d in decoders if d not in DECODERS]
    if bad or not decoders:
        raise MaeBenchError(f"bench data: decoders must be among {', '.join(DECODERS)}, got {decoders}")
    if "pil" not in decoders:
        decoders.insert(0, "pil")  # the reference every other decoder is compared with
    for key, lo, hi in (("passes", 1, None), ("procs", 1, None), ("quality", 1, 100)):
        v = c[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi and v > hi)):
            raise MaeBenchError(f"bench data: {key} must be an integer >= {lo}" + (f" and <= {hi}" if hi else "")
                                + f", got {v!r}")
    size = tuple(c["image_size"])
    if len(size) != 2 or min(size) < 16:
        raise MaeBenchError(f"bench data: image_size must be [width, height] of at least 16 px, got {list(size)}")
    pre = load_recipe("pretrain", c["pretrain_recipe"]).to_dict()
    pipe_args = (pre["model"]["img_size"], list(pre["data"]["crop_scale"]), pre["data"]["augment"])
    cores = available_cores()
    procs = int(c["procs"] or cores)
    with tempfile.TemporaryDirectory(prefix="mae-bench-data-") as tmp:
        if c["data"]:
            paths, source = find_jpegs(c["data"], c["num_images"]), str(c["data"])
        else:
            paths = synth_jpegs(Path(tmp), c["num_images"], size, c["seed"], c["quality"])
            source = f"{len(paths)} synthetic {size[0]}x{size[1]} JPEGs (quality {c['quality']}, textures + noise)"
        mean_px = statistics.mean(_pixels(p) for p in paths)
        diffs = differences(paths, pipelines(*pipe_args))
        runs, loads = time_decoders(paths, pipe_args, decoders, procs, c["repeats"], c["passes"])
    rows = [dict(decoder=d, img_s=statistics.median(runs[d]), runs=runs[d], diff=diffs[d]) for d in decoders]
    best = max(rows, key=lambda r: r["img_s"])
    return dict(date=datetime.datetime.now().isoformat(timespec="seconds"), cpu=cpu_model(), cores=cores,
                procs=procs, source=source, images=len(paths), mean_megapixels=mean_px / 1e6,
                pipeline=dict(zip(("img_size", "crop_scale", "augment"), pipe_args)), settings=c, rows=rows,
                loads=loads, load_warning=load_warning(loads, procs), target=TARGET, best=best["decoder"],
                met=best["img_s"] >= TARGET)


def _pixels(path) -> int:
    from PIL import Image
    with Image.open(path) as im:
        return im.size[0] * im.size[1]


def render(res: dict) -> str:
    s, p = res["settings"], res["pipeline"]
    lines = [f"- date: {res['date']}",
             f"- CPU: {describe_cpu(res['cpu'])}; {res['cores']} core(s) available, {res['procs']} process(es), "
             "one thread each",
             f"- images: {res['source']} ({res['images']} files, {res['mean_megapixels']:.2f} MP on average)",
             f"- pipeline (pretraining recipe `{s['pretrain_recipe']}`): RandomResizedCrop {p['img_size']} scale "
             f"{tuple(p['crop_scale'])} bicubic, horizontal flip, ToTensor, normalise",
             f"- timing: every process decodes all images {s['passes']}x per repeat after {WARMUP} warm-up images; "
             f"{s['repeats']} interleaved repeat(s); median and min-max over repeats",
             "- load average (1 min) before, then after each repeat: "
             + ", ".join("?" if v is None else f"{v:.2f}" for v in res["loads"])]
    if res["load_warning"]:
        lines.append(f"- **warning**: {res['load_warning']}")
    head = ["decoder", "img/s per core (median)", "min-max", "runs", f">= {res['target']}?",
            "diff vs pil (mean / max, 0-255)"]
    table = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in res["rows"]:
        table.append(f"| {r['decoder']} | {r['img_s']:.0f} | {min(r['runs']):.0f}-{max(r['runs']):.0f} | "
                     + ", ".join(f"{v:.0f}" for v in r["runs"])
                     + f" | {'yes' if r['img_s'] >= res['target'] else 'no'} | {r['diff'][0]:.2f} / {r['diff'][1]:.0f} |")
    best = next(r for r in res["rows"] if r["decoder"] == res["best"])
    verdict = (f"target >= {res['target']} img/s per core (16 cores x {res['target']} = {16 * res['target'] / 1e3:.1f}k "
               f"img/s, about one H100's ~7k img/s of ViT-B pretraining): "
               f"{'met' if res['met'] else 'NOT met'} (best: {best['decoder']}, {best['img_s']:.0f} img/s per core, "
               f"{best['img_s'] * 16 / 1e3:.1f}k img/s on 16 such cores)")
    return "\n".join(lines + [""] + table + ["", verdict])


def report(cfg) -> int:
    """Run, print the table, and write the section into `out` when set."""
    from .speed import write_section
    res = measure(cfg)
    body = render(res)
    print(body)
    if res["load_warning"]:
        import sys
        print(f"mae-bench: warning: {res['load_warning']}", file=sys.stderr)
    out = _plain(cfg).get("out")
    if out:
        p = res["pipeline"]
        s = res["settings"]
        images = Path(s["data"]).name if s["data"] else f"synthetic-{s['image_size'][0]}x{s['image_size'][1]}"
        key = f"data/{images}/{p['img_size']}px"
        print(f"wrote {write_section(out, key, body)}")
    return 0


def main(argv=None) -> int:
    from . import load_recipe, recipe_parser, run_main

    def body(argv):
        parser = recipe_parser(__doc__.splitlines()[0])
        parser.add_argument("--data", help="a folder of JPEGs (default: synthetic 500x375 JPEGs)")
        args = parser.parse_args(argv)
        from benchmarks.config import parse_overrides
        sets = {**parse_overrides(args.overrides), **({"data": args.data} if args.data else {})}
        return report(load_recipe("bench_data", args.recipe, sets))
    return run_main(body, argv)


if __name__ == "__main__":
    import sys
    sys.exit(main())
