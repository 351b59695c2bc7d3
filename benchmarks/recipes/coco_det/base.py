# ViTDet Mask R-CNN, ViT-B/16 (detectron2 projects/ViTDet mask_rcnn_vitdet_b_100ep): every knob lives here.
model = dict(
    img_size=1024,  # LSJ crop and test size (longest side, padded to a square)
    pretrain_img_size=224,  # pos_embed is kept at this grid and resized to the input each forward
    window_size=14,  # window attention in all blocks but four evenly spaced global ones (2, 5, 8, 11 for ViT-B)
    use_rel_pos=True,  # decomposed relative position bias, zero-initialised
    drop_path=0.1,  # ViT-L 0.4, ViT-H 0.5
    num_heads=None,  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
    fpn_channels=256,
    anchor_sizes=(32, 64, 128, 256, 512),  # one per level p2-p6, aspect ratios 0.5, 1, 2
    head_channels=256,  # box head convs and mask head convs
    box_convs=4,
    box_fc=1024,
    mask_convs=4,
    rpn=dict(pre_nms_train=2000, pre_nms_test=1000, post_nms_train=1000, post_nms_test=1000, batch_per_image=256),
    roi_batch_per_image=512,
    score_thresh=0.05,
    detections_per_image=100,
    head_init="detectron2",  # box/mask predictors and box-head fcs as detectron2 (torchvision: its own defaults)
)
data = dict(
    train_split="train2017",
    val_split="val2017",
    scale_range=(0.1, 2.0),  # large-scale jitter
    flip=True,
    subset=None,  # N training images, deterministic
    val_subset=None,
    strict=False,  # True: a missing/unreadable image or malformed annotation fails the run; False: skipped and counted
    num_workers=8,
)
# lr is for lr_batch images and scales linearly with the effective batch (1e-4 at 64). Weight decay as detectron2's
# get_default_optimizer_params(weight_decay_norm=0.0) with overrides {"pos_embed": {"weight_decay": 0.0}}: none on the
# ViT's torch LayerNorms and pos_embed; the pyramid's and heads' LayerNorms (detectron2's own) and biases decay.
optim = dict(lr=1e-4, lr_batch=64, betas=(0.9, 0.999), weight_decay=0.1, layer_decay=0.7, min_lr=0.0, clip_grad=None,
             weight_decay_norm=0.0, zero_decay=("pos_embed",))
# ViTDet's lr schedule as its config writes it: max_iter 184,375 at batch 64 (~100 COCO epochs), x0.1 at iterations
# 163,889 and 177,546, 250 warm-up iterations. A run's length is `epochs` passes over its data (a subset changes it);
# the milestones fall at the same fraction of the run's own updates (exactly these iterations when it runs max_iter).
schedule = dict(epochs=100, batch_size=2, accum_iter=1, eval_batch_size=1, lr_schedule="step", max_iter=184375,
                milestones=(163889, 177546), warmup_iters=250, warmup_factor=0.001)
# ViTDet trains with fp16 autocast and a grad scaler (train.amp.enabled) and evaluates in float32
runtime = dict(seed=0, device="auto", amp="fp16", eval_amp="none", save_every=10, keep_last=1, log_every=20,
               eval_every=10)
