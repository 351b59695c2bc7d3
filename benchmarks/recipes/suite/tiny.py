# The suite at test scale (the test suite's end-to-end check of data -> runs -> tables -> regression check):
# 32 px scenes, one or two epochs per step, seconds each.
img_size = 32
synth = dict(n_train=24, n_val=8)
_cls = {"schedule.epochs": 1, "schedule.batch_size": 8, "schedule.warmup_epochs": 0, "runtime.device": "cpu"}
pretrain = dict(sets={"schedule.epochs": 1, "schedule.batch_size": 8, "schedule.warmup_epochs": 0,
                      "model.decoder_depth": 1, "model.decoder_embed_dim": 64, "runtime.device": "cpu"})
supervised = dict(sets=_cls)
steps = dict(
    in1k_linear=dict(sets=_cls),
    in1k_partial=dict(sets={**_cls, "blocks": 1}),
    in1k_finetune=dict(sets=_cls),
    knn=dict(sets={"schedule.batch_size": 8, "runtime.device": "cpu"}),
    coco_det=dict(sets={"model.img_size": 64, "schedule.epochs": 1, "data.subset": None, "data.val_subset": None,
                         "runtime.device": "cpu"}),
    ade20k_seg=dict(sets={"model.img_size": 64, "schedule.iters": 4, "schedule.warmup_iters": 1,
                          "schedule.eval_interval": 4, "schedule.batch_size": 4, "runtime.device": "cpu"}),
)
baseline = None
