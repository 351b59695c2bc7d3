"""`mae-bench`: one command per protocol. Heavy imports happen inside the handlers so
`--help` is instant and `tables` works without torch."""
import argparse
import signal
import sys
import threading

from .error_lines import Terminated
from .tasks import TASK_OPTIONS, TASKS, downstream_tasks

DESCRIPTION = ("Pretrain Masked Autoencoders and measure them under the MAE paper's protocols "
               "(ImageNet linear probe, partial and full fine-tuning, COCO detection, ADE20K segmentation), "
               "then build the paper's tables from the result files.")


def _recipe_opts(p: argparse.ArgumentParser, default: str = "base") -> None:
    p.add_argument("--recipe", default=default, help=f"recipe name or path to a recipe .py (default: {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe entry, e.g. --set model.mask_ratio=0.5 (repeatable)")


def _load(family: str, args, flags: dict | None = None):
    """The recipe with --set applied, then the explicit command-line flags (they win)."""
    from .config import load_recipe, parse_overrides
    sets = parse_overrides(args.overrides)
    sets.update({k: v for k, v in (flags or {}).items() if v is not None})
    return load_recipe(family, args.recipe, sets)


# ---- handlers ---------------------------------------------------------------------------
def cmd_data_synth(args) -> int:
    from transfer import synth
    cfg = _load("synth", args, {"n_train": args.train, "n_val": args.val, "img_size": args.img_size,
                                "seed": args.seed})
    summary = synth.generate(args.out, n_train=cfg.n_train, n_val=cfg.n_val, img_size=cfg.img_size,
                             seed=cfg.seed, progress=not args.quiet)
    counts = summary["counts"]
    print(f"wrote {counts['train']['images']} train + {counts['val']['images']} val scenes "
          f"({summary['num_classes']} classes) "
          f"to {args.out} in {summary['seconds']:.1f}s")
    return 0


def cmd_pretrain(args) -> int:
    from .running import run_task
    cfg = _load(TASKS["pretrain"].recipes, args, {"model.arch": args.arch, "schedule.epochs": args.epochs,
                                   "schedule.batch_size": args.batch_size, "model.img_size": args.img_size,
                                   "runtime.seed": args.seed, "data.subset": args.subset,
                                   "runtime.device": args.device})
    run_task("pretrain", cfg, init="scratch", arch=None, data=args.data, out=args.out, resume=args.resume)
    return 0


def cmd_visualize(args) -> int:
    from .visualize_cmd import visualize
    cfg = _load("visualize", args, {"mask_ratio": args.mask_ratio, "seed": args.seed,
                                    "num_images": args.num, "img_size": args.img_size})
    out = visualize(args.ckpt, args.images, args.out, cfg)
    print(f"wrote {out}")
    return 0


EXPORTERS = {  # --to NAME -> (module, function, what the names are); each returns the arch it wrote
    "timm": ("mae_core.export", "export_timm", "timm's names"),
    "detectron2": ("transfer.detection.export", "export_detectron2", "detectron2 ViTDet's backbone.net.* names"),
    "mmseg": ("transfer.segmentation.export", "export_mmseg", "mmsegmentation's MAE or BEiT backbone names"),
}


def cmd_export(args) -> int:
    import importlib
    module, fn, names = EXPORTERS[args.to]
    arch = getattr(importlib.import_module(module), fn)(args.ckpt, args.out)
    print(f"wrote {args.out} ({arch} encoder in {names})")
    return 0


def _report_regressions(result) -> int:
    regressions = result["regressions"]
    if result["baseline"] is None:
        return 0
    if not regressions:
        print(f"no regressions against {result['baseline']} ({len(result['records'])} runs)")
        return 0
    for r in regressions:
        print(f"REGRESSION {r}", file=sys.stderr)
    print(f"mae-bench: error: {len(regressions)} metric(s) regressed against {result['baseline']}", file=sys.stderr)
    return 1


def cmd_demo(args) -> int:
    from .demo import demo
    # A regression exits non-zero as in `mae-bench suite`: the check against ci.json is what tells a user that the
    # set-up reproduces the committed numbers; its tolerances (3 seed standard deviations, at least 2 points) are far wider than the
    # rounding differences between CPUs, so a failure here means something is wrong, not noise.
    return _report_regressions(demo(_load("demo", args), args.out))


def cmd_suite(args) -> int:
    from pathlib import Path

    from mae_core.errors import MaeBenchError
    from .orchestration.suite import DataPaths, run_suite
    seeds = parse_seeds(args.seeds)
    if seeds and args.update_baseline:
        raise MaeBenchError("--update-baseline takes one suite run; `mae-bench baseline OUT/seed_*` makes a baseline "
                            "from the seeds' spread")
    data = DataPaths.from_root(args.data_root, imagenet=args.imagenet, coco=args.coco, ade20k=args.ade20k)
    cfgs = [(_load("suite", args, {"subset": args.subset, "seed": seed}),  # every seed's recipe before any work
             args.out if seed is None else str(Path(args.out) / f"seed_{seed}")) for seed in seeds or [None]]
    code = 0
    for cfg, out in cfgs:  # one whole suite per seed, in OUT/seed_S with the suite's seed = S
        result = run_suite(cfg, data, out, update_baseline=args.update_baseline, tolerance=args.tolerance)
        print(f"suite {args.recipe} finished in {result['seconds']:.0f}s; tables in {out}/tables")
        code = max(code, _report_regressions(result))
    if seeds:
        runs = " ".join(f"{out}/runs" for _, out in cfgs)
        print(f"{len(seeds)} seeds in {args.out}/seed_*: the seed table (mean ± std (n) per setting, MAE - scratch over "
              f"its standard error) is `python -m tools.seed_table {runs}` from a checkout; `mae-bench compare` pairs "
              "two settings over the seeds (OUT/seed_*/runs/TASK/INIT joined by commas)")
    return code


def cmd_sweep(args) -> int:
    from .config import load_recipe, parse_overrides
    from .orchestration.launcher import Launcher, parse_minutes
    from .orchestration.sweep import imagenet_root, run_sweep
    sets = parse_overrides(args.overrides)
    cfg = load_recipe("sweep", args.name, sets)
    launcher = Launcher(args.launcher, nodes=args.nodes, gpus_per_node=args.gpus_per_node, partition=args.partition,
                        account=args.account, time_min=parse_minutes(args.time))
    # values given on the command line win over the recipe's per-scale values
    result = run_sweep(cfg, args.recipe, imagenet_root(args.data_root, args.imagenet), args.out, launcher,
                       values=cfg["values"] if "values" in sets else None)
    shown = f"its table: {result['table']}; " if result["table"] else ""
    print(f"sweep {args.name} finished in {result['seconds']:.0f}s ({result['skipped']} of {result['jobs']} cells "
          f"done before); {shown}tables in {result['tables']}")
    return 0


def parse_seeds(text: str | None) -> list[int] | None:
    """`--seeds 0,1,2` -> [0, 1, 2]: distinct non-negative integers."""
    if text is None:
        return None
    from mae_core.errors import MaeBenchError
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise MaeBenchError(f"--seeds takes distinct non-negative integers joined by commas, e.g. 0,1,2; got {text!r}")
    return seeds


def cmd_run(args) -> int:
    from pathlib import Path

    from mae_core.errors import MaeBenchError
    from .running import run_task
    seeds = parse_seeds(args.seeds)
    if seeds and args.resume not in (None, "auto"):
        raise MaeBenchError("--seeds runs several replicates: resume them with --resume auto, not one checkpoint")
    # one replicate per seed, in RUN/seed_S with runtime.seed = S (a seed group for `tables` and `compare`)
    for seed in seeds or [None]:
        cfg = _load(TASKS[args.task].recipes, args, {"data.subset": args.subset, "runtime.seed": seed,
                                                     "data.strict": True if args.strict else None})
        out = args.out if seed is None else str(Path(args.out) / f"seed_{seed}")
        run_task(args.task, cfg, init=args.ckpt, arch=args.arch, data=args.data, out=out, resume=args.resume,
                 options={key: getattr(args, key) for key in TASK_OPTIONS})
    return 0


def cmd_baseline(args) -> int:
    from pathlib import Path
    from mae_core.errors import MaeBenchError
    from results.frame import load_records
    from results.regression import write_baseline
    from .tasks import primary_metrics
    if args.sigmas <= 0 or args.floor < 0:
        raise MaeBenchError(f"--sigmas must be > 0 and --floor >= 0, got {args.sigmas} and {args.floor}")
    records = []
    for folder in args.runs:
        if not Path(folder).is_dir():
            raise MaeBenchError(f"no such run folder: {folder}")
        records += load_records(folder)
    path = write_baseline(records, args.out, tolerance=args.floor, metrics=primary_metrics(), sigmas=args.sigmas)
    print(f"wrote baseline {path} from {len(records)} runs in {len(args.runs)} folder(s): tolerance "
          f"{args.sigmas:g} x the seed std of (new run - mean), at least {args.floor:g} points")
    return 0


def cmd_compare(args) -> int:
    import json
    from results.compare import compare_paths
    sides = [side.split(",") if "," in side else side for side in (args.a, args.b)]
    rows, text = compare_paths(*sides, metrics=args.metric, resamples=args.resamples, seed=args.seed,
                               level=args.level)
    print(json.dumps(rows, indent=2) if args.json else text)
    return 0


def cmd_tables(args) -> int:
    from .commands import tables
    tables(_load("tables", args), args.results, args.out, ci=args.ci, baseline=args.baseline,
           versus={"resamples": args.resamples, "seed": args.seed})
    return 0


# ---- parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mae-bench", description=DESCRIPTION)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="make or prepare datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="write the synthetic scene set in ImageNet, COCO and ADE20K layouts")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--train", type=int, help="number of training scenes")
    synth.add_argument("--val", type=int, help="number of validation scenes")
    synth.add_argument("--img-size", type=int, help="image side in pixels")
    synth.add_argument("--seed", type=int, help="generator seed (same seed, same bytes)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    _recipe_opts(synth)
    synth.set_defaults(func=cmd_data_synth)

    pre = sub.add_parser("pretrain", help="pretrain an MAE encoder")
    pre.add_argument("--data", required=True, help="ImageFolder tree or flat folder of images")
    pre.add_argument("--arch", help="encoder, e.g. vit_base_patch16")
    pre.add_argument("--out", required=True, help="run folder")
    pre.add_argument("--epochs", type=int)
    pre.add_argument("--batch-size", type=int)
    pre.add_argument("--img-size", type=int)
    pre.add_argument("--seed", type=int)
    pre.add_argument("--subset", type=int, help="use N images (deterministic)")
    pre.add_argument("--resume", help="auto or a checkpoint path")
    pre.add_argument("--device", choices=("auto", "cpu", "cuda"))
    _recipe_opts(pre)
    pre.set_defaults(func=cmd_pretrain)

    run = sub.add_parser("run", help="run a downstream task on a checkpoint")
    run.add_argument("--task", required=True, choices=downstream_tasks())
    run.add_argument("--ckpt", required=True, help="PATH (format detected), FORMAT:PATH (mae, supervised, timm, deit, moco_v3, dino, ibot, dinov2, hf_*) or scratch")
    run.add_argument("--arch", help="encoder for --ckpt scratch; with a checkpoint (inferred otherwise), it must "
                                    "agree with the tensors and sets the heads, as --set model.num_heads=N does")
    run.add_argument("--data", required=True, help="dataset root")
    run.add_argument("--out", required=True, help="run folder")
    run.add_argument("--subset", type=int)
    run.add_argument("--resume", help="auto or a checkpoint path")
    run.add_argument("--strict", action="store_true", help="an unreadable image fails the run (default: skip and count)")
    run.add_argument("--seeds", metavar="S,S,...", help="replicates: one run per seed in OUT/seed_S (runtime.seed = S); "
                     "tables show their mean ± std (n), compare takes OUT as a seed group")
    for key, (flag, text) in TASK_OPTIONS.items():
        users = ", ".join(t.name for t in downstream_tasks().values() if key in t.options)
        run.add_argument("--" + key.replace("_", "-"), help=f"{users}: {text}",
                         **({"action": "store_true"} if flag else {}))
    _recipe_opts(run)
    run.set_defaults(func=cmd_run)

    tables = sub.add_parser("tables", help="build the paper's tables from result files")
    tables.add_argument("--results", required=True, help="folder searched for result.json files")
    tables.add_argument("--out", required=True, help="output folder")
    tables.add_argument("--ci", nargs="?", type=float, const=0.95, metavar="LEVEL",
                        help="show each seed group's Student t interval of its mean (default level 0.95)")
    tables.add_argument("--baseline", metavar="TABLE:ROW", help="mark every other row of TABLE with its difference "
                        "to ROW (its id, e.g. m1, or label) and the paired bootstrap interval, e.g. in1k:m1")
    tables.add_argument("--resamples", type=int, default=1000, help="--baseline: bootstrap resamples (default 1000)")
    tables.add_argument("--seed", type=int, default=0, help="--baseline: bootstrap seed (default 0)")
    _recipe_opts(tables)
    tables.set_defaults(func=cmd_tables)

    cmp = sub.add_parser("compare", help="two runs (or seed groups) on the same evaluation images: the metric "
                         "difference with its paired bootstrap interval, McNemar's exact p for top-1")
    cmp.add_argument("a", metavar="RUN_A", help="a run folder, a folder of seed runs, or several paths joined by commas")
    cmp.add_argument("b", metavar="RUN_B", help="the same for the other side")
    cmp.add_argument("--metric", action="append", help="compare only this metric (repeatable; default: all the "
                     "runs' per-image evidence gives: top1 top5, mIoU, bbox_AP segm_AP)")
    cmp.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    cmp.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    cmp.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    cmp.add_argument("--json", action="store_true", help="print the numbers as JSON")
    cmp.set_defaults(func=cmd_compare)

    vis = sub.add_parser("visualize", help="Figure 2 style reconstructions from an MAE checkpoint")
    vis.add_argument("--ckpt", required=True, help="MAE checkpoint with its decoder")
    vis.add_argument("--images", required=True, help="an image or a folder of images")
    vis.add_argument("--out", required=True, help="output PNG")
    vis.add_argument("--mask-ratio", type=float)
    vis.add_argument("--seed", type=int)
    vis.add_argument("--num", type=int, help="number of images (rows)")
    vis.add_argument("--img-size", type=int, help="input size (default: the checkpoint's)")
    _recipe_opts(vis)
    vis.set_defaults(func=cmd_visualize)

    demo = sub.add_parser("demo", help="the main job on synthetic data, start to finish")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    _recipe_opts(demo)
    demo.set_defaults(func=cmd_demo)

    suite = sub.add_parser("suite", help="pretrain, baseline, every task x init, tables, regression check")
    suite.add_argument("--name", "--recipe", dest="recipe", default="ci", help="suite recipe (default: ci)")
    suite.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a suite recipe entry (repeatable)")
    suite.add_argument("--data-root", help="folder with imagenet/, coco/ and ade20k/ (e.g. from `mae-bench data synth`)")
    suite.add_argument("--imagenet", help="ImageFolder root with train/ and val/ (instead of DATA_ROOT/imagenet)")
    suite.add_argument("--coco", help="COCO root with annotations/, train2017/, val2017/")
    suite.add_argument("--ade20k", help="ADEChallengeData2016 folder")
    suite.add_argument("--out", required=True, help="suite folder: one run folder per step, tables/")
    suite.add_argument("--subset", type=int, help="N images per task (deterministic), for real-data CI")
    suite.add_argument("--update-baseline", action="store_true",
                       help="write the suite's baseline file from this run instead of comparing")
    suite.add_argument("--seeds", metavar="S,S,...", help="one whole suite per seed in OUT/seed_S (the suite's seed = "
                       "S), each checked against the baseline")
    suite.add_argument("--tolerance", type=float, default=5.0,
                       help="with --update-baseline: allowed drop per metric, in points (default 5)")
    suite.set_defaults(func=cmd_suite)

    base = sub.add_parser("baseline", help="a regression baseline from several seeds' runs, tolerances from their spread")
    base.add_argument("runs", nargs="+", help="folders holding result.json files (e.g. suite runs with other seeds)")
    base.add_argument("--out", required=True, help="baseline JSON to write (e.g. benchmarks/baselines/ci.json)")
    base.add_argument("--sigmas", type=float, default=3.0, help="tolerance in standard deviations (default 3)")
    base.add_argument("--floor", type=float, default=1.0, help="smallest tolerance, in points (default 1)")
    base.set_defaults(func=cmd_baseline)

    sweep = sub.add_parser("sweep", help="one of the paper's ablations: a grid of pretrainings, their protocols, the table")
    sweep.add_argument("--name", required=True, help="sweep recipe (benchmarks/recipes/sweep/NAME.py, or a path), "
                       "e.g. decoder_depth, mask_ratio, partial")
    sweep.add_argument("--recipe", default="paper", help="scale: paper | subset | smoke (default: paper)")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a sweep recipe entry, e.g. --set 'values=[1, 8]' (repeatable)")
    sweep.add_argument("--data-root", help="folder with imagenet/ (e.g. from `mae-bench data synth`)")
    sweep.add_argument("--imagenet", help="ImageFolder root with train/ and val/ (instead of DATA_ROOT/imagenet)")
    sweep.add_argument("--out", required=True, help="sweep folder: cells/, tables/, slurm/")
    sweep.add_argument("--launcher", default="local", choices=("local", "slurm", "submitit-local"),
                       help="local: in this process; slurm: one submitit job per cell (DDP, one task per GPU); "
                       "submitit-local: the same jobs on this machine")
    sweep.add_argument("--nodes", type=int, default=1, help="slurm: nodes per job (default 1)")
    sweep.add_argument("--gpus-per-node", type=int, default=1, help="slurm, submitit-local: GPUs (processes) per node")
    sweep.add_argument("--partition", help="slurm: partition")
    sweep.add_argument("--account", help="slurm: account")
    sweep.add_argument("--time", default="4320", help="slurm: time limit per job, minutes or [D-]HH:MM[:SS] "
                       "(default 4320); a job that reaches it is requeued and resumes")
    sweep.set_defaults(func=cmd_sweep)

    exp = sub.add_parser("export", help="write an encoder in another codebase's key layout")
    exp.add_argument("--to", required=True, choices=("timm", "detectron2", "mmseg"))
    exp.add_argument("--ckpt", required=True)
    exp.add_argument("--out", required=True, help="output file (.pth or .safetensors)")
    exp.set_defaults(func=cmd_export)
    return parser


def _on_sigterm(signum, frame):
    raise Terminated()


# commands that run models in this process: their torch threads are set once, from the cores really available
_COMPUTE = ("pretrain", "run", "visualize", "suite", "sweep", "demo")


# commands that read the task registry: a MAE_BENCH_TASKS module that failed to load stops them (one line)
_NEEDS_TASKS = ("run", "suite", "demo", "sweep", "baseline", "tables")


def main(argv: list[str] | None = None) -> int:
    from .tasks import DISCOVERY_ERRORS
    for line in DISCOVERY_ERRORS:  # before parsing: `--help` exits inside it and still shows the warning
        print(f"mae-bench: warning: {line}", file=sys.stderr)
    args = build_parser().parse_args(argv)
    if DISCOVERY_ERRORS and args.command in _NEEDS_TASKS:
        print(f"mae-bench: error: {DISCOVERY_ERRORS[0]}", file=sys.stderr)
        return 1
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        signal.signal(signal.SIGTERM, _on_sigterm)
    if args.command in _COMPUTE:
        from mae_core.threads import configure_threads
        configure_threads()  # OMP_NUM_THREADS wins when set
    if args.debug:
        return args.func(args)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"mae-bench: {'terminated (SIGTERM)' if terminated else 'interrupted'}; finished checkpoints are kept, "
              "--resume auto continues", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as e:  # one line, never a traceback: --debug shows it
        from .error_lines import describe

        print(f"mae-bench: error: {describe(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
