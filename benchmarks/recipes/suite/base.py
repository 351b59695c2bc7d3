# A suite = one MAE pretraining, one supervised-from-scratch baseline, every task x every init, the tables and a
# regression check. Each step runs a task recipe (`recipe`) with its `sets` (recipe key -> value) on top.
arch = "vit_tiny_patch16"
img_size = 64
seed = 0
subset = None  # N images per task (deterministic); for CI runs on real dataset subsets
inits = ["mae", "supervised", "scratch"]
tasks = None  # None: every registered task (benchmarks.tasks), in registration order
synth = dict(n_train=600, n_val=150)  # scenes `mae-bench demo` generates for the suite (at img_size)
pretrain = dict(recipe="smoke", sets={"schedule.epochs": 40})
supervised = dict(recipe="supervised_smoke", sets={})
default_step = dict(recipe="smoke", sets={})  # a task's step when `steps` has no entry for it
steps = dict(  # per task: recipe and overrides
    in1k_linear=dict(recipe="smoke", sets={}),
    in1k_partial=dict(recipe="smoke", sets={}),
    in1k_finetune=dict(recipe="smoke", sets={}),
    knn=dict(recipe="smoke", sets={}),
    coco_det=dict(recipe="smoke", sets={}),
    ade20k_seg=dict(recipe="smoke", sets={}),
)
baseline = "ci.json"  # in benchmarks/baselines/ (or a path); None: no regression check
