"""Sweep recipes: a grid over one knob (or a few knobs set together), each cell an MAE pretraining followed by the
protocols the paper's table reports; `--recipe paper|subset|smoke` picks the scale from `scales`."""
from benchmarks.recipe_schema import NonNegative, section


@section
class Recipe:
    # recipe key the grid varies, e.g. "model.decoder_depth", or a tuple of keys set together
    knob: str | tuple[str, ...] | None = None
    values: list = []  # one entry per cell (a tuple per cell when `knob` is a tuple)
    stage: str = "pretrain"  # pretrain: one MAE per cell | task: one MAE, the knob set on the tasks (paper Figure 9)
    # the protocols each cell runs (results in cells/<cell>/seed<s>/<task>)
    tasks: list[str] = ["in1k_finetune", "in1k_linear"]
    seeds: list[NonNegative] = [0]
    table: str | None = None  # the `mae-bench tables` output that shows this sweep (printed at the end)
    # Per scale and step: the family recipe, its --set overrides, and the effective batch to hold (None: the recipe's);
    # a scale may also hold its own `values` where the paper's do not fit it (e.g. scales = dict(smoke=dict(values=[...]))).
    # With `effective_batch` B and P processes (1 in-process; nodes x gpus-per-node under --launcher slurm), the sweep
    # sets schedule.accum_iter = ceil(B / (batch_size x P)) and schedule.batch_size = B / (accum_iter x P) (never above
    # the recipe's), so the lr (blr x B / 256) and the schedule stay the paper's on any number of GPUs.
    # in1k_partial: `effective_batch` holds for K >= 1, `effective_batch_probe` for K = 0 (the linear probe's batch).
    # Open below the scale: the sweep checks each step's recipe and overrides before any work.
    scales: dict = dict(
        # the paper's Table 1 setting: ViT-L/16, 800 epochs, unnormalized pixels; ViT-L fine-tuning; linear probe
        paper=dict(
            pretrain=dict(recipe="paper", sets={"model.norm_pix_loss": False}, effective_batch=4096),
            in1k_finetune=dict(recipe="paper", sets={}, effective_batch=1024),
            in1k_linear=dict(recipe="paper", sets={}, effective_batch=16384),
            in1k_partial=dict(recipe="paper", sets={}, effective_batch=1024, effective_batch_probe=16384),
        ),
        subset=dict(  # real-data regressions: the subset recipes (10,000 pretraining images, short schedules)
            pretrain=dict(recipe="subset", sets={"model.norm_pix_loss": False}, effective_batch=None),
            in1k_finetune=dict(recipe="subset", sets={}, effective_batch=None),
            in1k_linear=dict(recipe="subset", sets={}, effective_batch=None),
            in1k_partial=dict(recipe="subset", sets={}, effective_batch=None, effective_batch_probe=None),
        ),
        ci=dict(  # the `ci` suite's scale (recipes/suite/ci.py): ViT-Micro/8 on 2,400 + 1,000 synthetic 64 px scenes,
            # 32 epochs; fine-tuning (full, partial) on 800 labelled scenes; the probes pool the patch tokens
            pretrain=dict(recipe="smoke", sets={"model.norm_pix_loss": False, "model.arch": "vit_micro_patch8",
                                                "schedule.epochs": 32, "schedule.batch_size": 64,
                                                "schedule.warmup_epochs": 2}, effective_batch=None),
            in1k_finetune=dict(recipe="smoke", sets={"data.subset": 800, "runtime.eval_every": 100},
                               effective_batch=None),
            in1k_linear=dict(recipe="smoke", sets={"model.global_pool": "avg"}, effective_batch=None),
            in1k_partial=dict(recipe="smoke", sets={"data.subset": 800, "runtime.eval_every": 100},
                              effective_batch=None, effective_batch_probe=None),
        ),
        smoke=dict(  # ViT-Tiny on the 64 px synthetic scenes (`mae-bench data synth`): minutes per cell on 2 CPU cores
            pretrain=dict(recipe="smoke", sets={"model.norm_pix_loss": False, "schedule.epochs": 20}, effective_batch=None),
            in1k_finetune=dict(recipe="smoke", sets={}, effective_batch=None),
            in1k_linear=dict(recipe="smoke", sets={}, effective_batch=None),
            in1k_partial=dict(recipe="smoke", sets={}, effective_batch=None, effective_batch_probe=None),
        ),
    )
