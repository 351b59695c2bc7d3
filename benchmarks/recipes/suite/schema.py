"""Suite recipes: one MAE pretraining, one supervised-from-scratch baseline, every task x every init, the tables and
a regression check. Each step runs a task recipe (`recipe`) with its `sets` (recipe key -> value, checked by the
step's own recipe) on top."""
from benchmarks.recipe_schema import ImgSize, NonNegative, Positive, section


@section
class Step:
    recipe: str = "smoke"
    sets: dict = {}


@section
class Synth:
    """The scenes `mae-bench demo` generates for the suite (at img_size)."""
    n_train: Positive = 600
    n_val: Positive = 150


@section
class Recipe:
    arch: str = "vit_tiny_patch16"
    img_size: ImgSize = 64
    seed: NonNegative = 0
    subset: Positive | None = None  # N images per task (deterministic); for CI runs on real dataset subsets
    inits: list[str] = ["mae", "supervised", "scratch"]
    tasks: list[str] | None = None  # None: every registered task (benchmarks.tasks), in registration order
    synth: Synth
    pretrain: Step = Step(recipe="smoke", sets={"schedule.epochs": 40})
    supervised: Step = Step(recipe="supervised_smoke")
    default_step: Step  # a task's step when `steps` has no entry for it
    steps: dict[str, Step] = dict(  # per task: recipe and overrides
        in1k_linear=dict(recipe="smoke", sets={}),
        in1k_partial=dict(recipe="smoke", sets={}),
        in1k_finetune=dict(recipe="smoke", sets={}),
        knn=dict(recipe="smoke", sets={}),
        coco_det=dict(recipe="smoke", sets={}),
        ade20k_seg=dict(recipe="smoke", sets={}),
    )
    baseline: str | None = "ci.json"  # in benchmarks/baselines/ (or a path); None: no regression check
