"""Images/s of a full MAE training step, ours vs HF `ViTMAEForPreTraining`, and the paper's Table 2 (encoder
with/without mask tokens x decoder depth).

    python -m tools.speed [--recipe base|smoke|PATH] [--set KEY=VALUE ...]   # recipes: tools/recipes/bench/
"""
import datetime
import gc
import importlib.metadata
import importlib.util
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from mae_core.atomic import atomic_write
from mae_core.cpu_linear import select_cpu_linear
from mae_core.engine import adamw
from mae_core.errors import MaeBenchError
from mae_core.models_mae import create_mae
from mae_core.onednn_linear import use_onednn_linears

from .host import cpu_model, describe_cpu, load_average, load_warning

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# He et al. 2022, Table 2: wall-clock speed-up of the encoder without mask tokens vs "w/ [M], dec. depth 8".
PAPER_T2 = {("vit_large_patch16", 8): 2.8, ("vit_large_patch16", 1): 3.7,
            ("vit_huge_patch14", 8): 3.5, ("vit_huge_patch14", 1): 4.1}


def _plain(cfg) -> dict:
    return dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def build_ours(c: dict, arch: str, **kw):
    args = dict(img_size=c["img_size"], norm_pix_loss=c["norm_pix_loss"], decoder_depth=c["decoder_depth"],
                decoder_embed_dim=c["decoder_embed_dim"], decoder_num_heads=c["decoder_num_heads"])
    args.update(kw)
    model = create_mae(arch, **args)
    return use_onednn_linears(model) if c.get("cpu_linear") == "onednn" else model


def build_hf(ours, mask_ratio: float, attn: str = "sdpa"):
    """HF `ViTMAEForPreTraining` with our model's shapes, from a config (no download). Returns (model, attn used)."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining
    k = ours.config
    shapes = dict(hidden_size=k["embed_dim"], num_hidden_layers=k["depth"], num_attention_heads=k["num_heads"],
                  intermediate_size=int(k["embed_dim"] * k["mlp_ratio"]), image_size=k["img_size"],
                  patch_size=k["patch_size"], num_channels=k["in_chans"], qkv_bias=True, hidden_act="gelu",
                  decoder_hidden_size=k["decoder_embed_dim"], decoder_num_hidden_layers=k["decoder_depth"],
                  decoder_num_attention_heads=k["decoder_num_heads"],
                  decoder_intermediate_size=int(k["decoder_embed_dim"] * k["mlp_ratio"]),
                  mask_ratio=mask_ratio, norm_pix_loss=k["norm_pix_loss"], layer_norm_eps=1e-6)
    for impl in dict.fromkeys((attn, "eager")):
        try:
            model = ViTMAEForPreTraining(ViTMAEConfig(**shapes, attn_implementation=impl))
            return model, getattr(model.config, "_attn_implementation", None) or impl
        except (ValueError, ImportError, TypeError):
            continue
    raise MaeBenchError("cannot build transformers' ViTMAEForPreTraining")


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def time_steps(model, forward, c: dict, dev: torch.device, steps: int, warmup: int) -> float:
    """Median seconds of a full training step (forward, backward, AdamW step, zero_grad) after warm-up."""
    model.to(dev).train()
    opt = adamw([p for p in model.parameters() if p.requires_grad], lr=c["lr"], betas=(0.9, 0.95),
                weight_decay=c["weight_decay"])
    scaler = torch.amp.GradScaler(dev.type, enabled=c["precision"] == "fp16")
    gen = torch.Generator().manual_seed(c["seed"])
    x = torch.randn(c["batch_size"], 3, c["img_size"], c["img_size"], generator=gen).to(dev)
    times = []
    for _ in range(warmup + steps):
        amp = torch.autocast(dev.type, dtype=DTYPES[c["precision"]]) if DTYPES[c["precision"]] else nullcontext()
        _sync(dev)
        t0 = time.perf_counter()
        with amp:
            loss = forward(model, x)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[warmup:])


def machine(dev: torch.device) -> dict:
    cpu = cpu_model()
    info = dict(cpu=cpu["name"], cpu_family=cpu["family"], cpu_model=cpu["model"], cores=os.cpu_count(),
                torch=torch.__version__, threads=torch.get_num_threads(), device=str(dev),
                python=platform.python_version())
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    if importlib.util.find_spec("transformers"):
        info["transformers"] = importlib.metadata.version("transformers")
    return info


def run_bench(cfg, progress: bool = True) -> dict:
    """Measure the recipe's rows; returns settings, machine, `main` rows (ours, HF) and `table2` rows."""
    c = _plain(cfg)
    dev = _device(c["device"])
    if c["precision"] not in DTYPES:
        raise MaeBenchError(f"precision must be one of {', '.join(DTYPES)}, got {c['precision']!r}")
    if dev.type == "cpu" and c["precision"] == "fp16":
        raise MaeBenchError("fp16 autocast is CUDA only; use precision=bf16 or fp32 on CPU")
    threads = torch.get_num_threads()
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    try:
        return _run(c, dev, progress)
    finally:
        torch.set_num_threads(threads)


def _run(c: dict, dev: torch.device, progress: bool) -> dict:
    mr = c["mask_ratio"]
    ours_fwd = lambda m, x: m(x, mask_ratio=mr)[0]  # noqa: E731
    hf_fwd = lambda m, x: m(pixel_values=x).loss  # noqa: E731
    loads = [load_average()]  # before anything of ours runs
    ours = build_ours(c, c["arch"])
    linear = select_cpu_linear(ours, c, str(dev)) if dev.type == "cpu" else None  # resolves auto once, for every row
    jobs, res = [], dict(settings={k: v for k, v in c.items() if k != "recipe_name"}, main=[], table2=[],
                         hf_note=None, date=datetime.datetime.now().isoformat(timespec="seconds"), cpu_linear=linear)
    main = dict(model="ours (mae_core)", arch=c["arch"], params=n_params(ours))
    res["main"].append(main)
    jobs.append((main, lambda: build_ours(c, c["arch"]), ours_fwd, c["steps"], c["warmup"]))
    if c["compare_hf"]:
        try:
            import transformers  # noqa: F401
        except ImportError:
            res["hf_note"] = "transformers is not installed (pip install transformers): HF comparison skipped"
        else:
            hf, attn = build_hf(ours, mr, c["hf_attn"])
            row = dict(model=f"HF ViTMAEForPreTraining (attn={attn})", arch=c["arch"], params=n_params(hf))
            res["main"].append(row)
            jobs.append((row, lambda: build_hf(build_ours(c, c["arch"]), mr, c["hf_attn"])[0], hf_fwd,
                         c["steps"], c["warmup"]))
            del hf
    del ours
    if c["table2"]:
        t2_steps, t2_warm = c.get("table2_steps") or c["steps"], c.get("table2_warmup")
        t2_warm = c["warmup"] if t2_warm is None else t2_warm
        for arch in c["table2_archs"]:
            for tokens in (True, False):
                for depth in sorted(c["decoder_depths"], reverse=True):
                    row = dict(arch=arch, decoder_depth=depth, mask_tokens_in_encoder=tokens)
                    res["table2"].append(row)
                    build = lambda a=arch, d=depth, t=tokens: build_ours(c, a, decoder_depth=d,  # noqa: E731
                                                                         mask_tokens_in_encoder=t)
                    jobs.append((row, build, ours_fwd, t2_steps, t2_warm))
    repeats = max(1, int(c.get("repeats") or 1))
    bar = tqdm(total=repeats * len(jobs), disable=None if progress else True, unit="run")  # None: off when stderr is no terminal
    for _ in range(repeats):
        for row, build, fwd, steps, warmup in jobs:
            bar.set_description(row["model"].split(" (")[0] if "model" in row else
                                f"{row['arch']} d{row['decoder_depth']} {'w/' if row['mask_tokens_in_encoder'] else 'no'} [M]")
            torch.manual_seed(c["seed"])
            model = build()
            row.setdefault("runs", []).append(c["batch_size"] / time_steps(model, fwd, c, dev, steps, warmup))
            del model
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            bar.update()
        loads.append(load_average())
    bar.close()
    for row in res["main"] + res["table2"]:
        row["img_s"] = statistics.median(row["runs"])
    if len(res["main"]) == 2:
        res["ratio"] = res["main"][0]["img_s"] / res["main"][1]["img_s"]
    base_depth = 8 if 8 in c["decoder_depths"] else max(c["decoder_depths"])
    for row in res["table2"]:
        base = next(r for r in res["table2"] if r["arch"] == row["arch"] and r["mask_tokens_in_encoder"]
                    and r["decoder_depth"] == base_depth)
        row["speedup"] = row["img_s"] / base["img_s"]
        row["paper_speedup"] = None if row["mask_tokens_in_encoder"] else PAPER_T2.get((row["arch"], row["decoder_depth"]))
    res["machine"] = machine(dev)
    res["load"] = loads
    res["load_warning"] = load_warning(loads, res["machine"]["threads"]) if dev.type == "cpu" else None
    return res


def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in r) + " |" for r in rows])


def _spread(runs: list) -> str:
    return f"{min(runs):.2f}-{max(runs):.2f}"


def _linear_text(s: dict, linear: dict | None) -> str:
    if not linear or linear.get("source") != "measured":
        return str(s.get("cpu_linear"))
    sec = linear.get("seconds") or {}
    timed = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in sec.items())
    return f"{linear['choice']} (auto: Linear passes timed at start-up, {timed})"


def render(res: dict) -> str:
    """The run as Markdown: machine, settings, ours vs HF, Table 2."""
    s, m = res["settings"], res["machine"]
    rep = f"median of {s.get('repeats') or 1} interleaved run(s), each the median of its timed steps"
    cpu = describe_cpu({"name": m["cpu"], "family": m.get("cpu_family"), "model": m.get("cpu_model")})
    out = [f"- date: {res['date']}", f"- machine: {cpu}, {m['cores']} cores, device {m['device']}"
           + (f" ({m['gpu']})" if "gpu" in m else "") + f", torch {m['torch']}, {m['threads']} threads"
           + (f", transformers {m['transformers']}" if "transformers" in m else ""),
           f"- settings: {s['arch']}, batch {s['batch_size']}, {s['img_size']} px, {s['precision']}, mask ratio "
           f"{s['mask_ratio']}, norm_pix_loss {s['norm_pix_loss']}, decoder {s['decoder_depth']}x"
           f"{s['decoder_embed_dim']} ({s['decoder_num_heads']} heads), AdamW betas (0.9, 0.95) fused, "
           f"our CPU fp32 Linear products: {_linear_text(s, res.get('cpu_linear'))}",
           f"- timing: warm-up {s['warmup']} + {s['steps']} steps; {rep}"]
    if res.get("load"):
        out.append("- load average (1 min) before, then after each repeat: "
                   + ", ".join("?" if v is None else f"{v:.2f}" for v in res["load"]))
    if res.get("load_warning"):
        out.append(f"- **warning**: {res['load_warning']}")
    out.append("")
    out += ["### Training step: ours vs HF", ""]
    out.append(_table(["model", "params", "img/s (median)", "min-max", "runs (img/s)"],
                      [[r["model"], f"{r['params']:,}", f"{r['img_s']:.2f}", _spread(r["runs"]),
                        ", ".join(f"{v:.2f}" for v in r["runs"])] for r in res["main"]]))
    if res.get("ratio") is not None:
        same = "equal" if res["main"][0]["params"] == res["main"][1]["params"] else "DIFFERENT"
        out.append(f"\nours / HF = **{res['ratio']:.2f}x** (parameter counts {same})")
    if res.get("hf_note"):
        out.append(f"\nnote: {res['hf_note']}")
    if res["table2"]:
        st = s.get("table2_steps") or s["steps"]
        wu = s["warmup"] if s.get("table2_warmup") is None else s["table2_warmup"]
        out += ["", f"### Table 2: encoder with / without mask tokens (warm-up {wu} + {st} steps)", ""]
        out.append(_table(["arch", "decoder depth", "mask tokens in encoder", "img/s (median)", "min-max", "speed-up",
                           "paper"],
                          [[r["arch"], r["decoder_depth"], "yes" if r["mask_tokens_in_encoder"] else "no",
                            f"{r['img_s']:.2f}", _spread(r["runs"]), f"{r['speedup']:.2f}x",
                            f"{r['paper_speedup']}x" if r["paper_speedup"] else "-"] for r in res["table2"]]))
        out.append("\nspeed-up vs the same arch with mask tokens in the encoder and the deepest decoder; paper: "
                   "He et al. 2022 Table 2 (wall-clock, 800 epochs, 128 TPU-v3 cores).")
    return "\n".join(out)


def section_key(res: dict) -> str:
    s, m = res["settings"], res["machine"]
    device = m["device"].split(":")[0]
    if device == "cpu" and m.get("cpu_family") is not None:  # another CPU model gets its own section
        device = f"cpu-f{m['cpu_family']}m{m['cpu_model']}"
    key = f"{device}/{s['arch']}/b{s['batch_size']}/{s['img_size']}px/{s['precision']}"
    forced = (res.get("cpu_linear") or {}).get("setting", s.get("cpu_linear"))  # auto's choice keeps the plain key
    return key + (f"/{forced}-linear" if m["device"].startswith("cpu") and forced in ("aten", "onednn") else "")


def write_section(path, key: str, body: str) -> Path:
    """Replace the section `key` of a Markdown file (append it when absent), atomically."""
    path = Path(path)
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{start}\n## {key}\n\n{body.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else "# Speed benchmarks\n\n"
    i, j = text.find(start), text.find(end)
    if 0 <= i < j:
        rest = text[j + len(end):].lstrip("\n")
        text = text[:i] + block + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def report(cfg) -> int:
    """Run, print the tables, and write the section into `out` when set."""
    res = run_bench(cfg)
    body = render(res)
    print(body)
    if res.get("load_warning"):
        print(f"mae-bench: warning: {res['load_warning']}", file=sys.stderr)
    out = _plain(cfg).get("out")
    if out:
        print(f"wrote {write_section(out, section_key(res), body)}")
    return 0


def main(argv=None) -> int:
    from . import load_recipe, recipe_parser, run_main

    def body(argv):
        args = recipe_parser(__doc__.splitlines()[0]).parse_args(argv)
        return report(load_recipe("bench", args.recipe, args.overrides))
    return run_main(body, argv)


if __name__ == "__main__":
    sys.exit(main())
