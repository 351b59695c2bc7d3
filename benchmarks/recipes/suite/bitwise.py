# The `ci` suite shortened, with runtime.cpu_linear pinned: a before / after check that a change leaves every number
# bitwise equal (`python -m tools.bitwise_compare BEFORE AFTER`); not a regression suite (no baseline). Minutes on
# 2 cores instead of the ci suite's hour: the same steps and code paths, fewer scenes and epochs.
_base_ = ["./ci.py"]
synth = dict(n_train=600, n_val=200)
_aten = {"runtime.cpu_linear": "aten"}  # the recipes that take it: pretraining, classification, segmentation
pretrain = dict(sets={"schedule.epochs": 3, "schedule.warmup_epochs": 1, **_aten})
supervised = dict(sets={"schedule.epochs": 2, "schedule.warmup_epochs": 1, **_aten})
steps = dict(
    in1k_linear=dict(sets=_aten),
    in1k_partial=dict(sets={**_aten, "data.subset": 300}),
    in1k_finetune=dict(sets={**_aten, "data.subset": 300}),
    coco_det=dict(sets={"data.subset": 100}),
    ade20k_seg=dict(sets={**_aten, "data.subset": 200, "data.val_subset": 100, "schedule.iters": 40,
                          "schedule.eval_interval": 40}),
)
baseline = None
