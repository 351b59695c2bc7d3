"""COCO detection recipes: ViTDet Mask R-CNN, ViT-B/16 (detectron2 projects/ViTDet mask_rcnn_vitdet_b_100ep): every
knob, its type, range and default."""
from benchmarks.recipe_schema import ImgSize, LayerDecay, NonNegative, NonNegativeFloat, Positive, Probability, section


@section
class Rpn:
    pre_nms_train: Positive = 2000
    pre_nms_test: Positive = 1000
    post_nms_train: Positive = 1000
    post_nms_test: Positive = 1000
    batch_per_image: Positive = 256


@section
class Model:
    img_size: ImgSize = 1024  # LSJ crop and test size (longest side, padded to a square)
    pretrain_img_size: ImgSize = 224  # pos_embed is kept at this grid and resized to the input each forward
    # window attention in all blocks but four evenly spaced global ones (2, 5, 8, 11 for ViT-B)
    window_size: Positive = 14
    use_rel_pos: bool = True  # decomposed relative position bias, zero-initialised
    drop_path: Probability = 0.1  # ViT-L 0.4, ViT-H 0.5
    num_heads: Positive | None = None  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
    fpn_channels: Positive = 256
    anchor_sizes: tuple[Positive, ...] = (32, 64, 128, 256, 512)  # one per level p2-p6, aspect ratios 0.5, 1, 2
    head_channels: Positive = 256  # box head convs and mask head convs
    box_convs: NonNegative = 4
    box_fc: Positive = 1024
    mask_convs: NonNegative = 4
    rpn: Rpn
    roi_batch_per_image: Positive = 512
    score_thresh: float = 0.05
    detections_per_image: Positive = 100
    # box/mask predictors and box-head fcs as detectron2 (torchvision: its own defaults)
    head_init: str = "detectron2"  # detectron2 | torchvision


@section
class Data:
    train_split: str = "train2017"
    val_split: str = "val2017"
    scale_range: tuple[float, float] = (0.1, 2.0)  # large-scale jitter
    flip: bool = True
    subset: Positive | None = None  # N training images, deterministic
    val_subset: Positive | None = None
    # True: a missing/unreadable image or malformed annotation fails the run; False: skipped and counted
    strict: bool = False
    num_workers: NonNegative = 8


@section
class Optim:
    """lr is for lr_batch images and scales linearly with the effective batch (1e-4 at 64). Weight decay as
    detectron2's get_default_optimizer_params(weight_decay_norm=0.0) with overrides {"pos_embed": {"weight_decay":
    0.0}}: none on the ViT's torch LayerNorms and pos_embed; the pyramid's and heads' LayerNorms (detectron2's own)
    and biases decay."""
    lr: NonNegativeFloat = 1e-4
    lr_batch: Positive = 64
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: NonNegativeFloat = 0.1
    layer_decay: LayerDecay = 0.7
    min_lr: NonNegativeFloat = 0.0
    clip_grad: float | None = None
    weight_decay_norm: NonNegativeFloat | None = 0.0  # None: norms decay as every other weight (ViT-H)
    zero_decay: tuple[str, ...] = ("pos_embed",)


@section
class Schedule:
    """ViTDet's lr schedule as its config writes it: max_iter 184,375 at batch 64 (~100 COCO epochs), x0.1 at
    iterations 163,889 and 177,546, 250 warm-up iterations. A run's length is `epochs` passes over its data (a subset
    changes it); the milestones fall at the same fraction of the run's own updates (exactly these iterations when it
    runs max_iter)."""
    epochs: Positive = 100
    batch_size: Positive = 2
    accum_iter: Positive = 1
    eval_batch_size: Positive = 1
    lr_schedule: str = "step"
    max_iter: Positive = 184375
    milestones: tuple[int, ...] = (163889, 177546)
    warmup_iters: NonNegative = 250
    warmup_factor: float = 0.001


@section
class Runtime:
    """ViTDet trains with fp16 autocast and a grad scaler (train.amp.enabled) and evaluates in float32."""
    seed: NonNegative = 0
    device: str = "auto"
    amp: str = "fp16"
    eval_amp: str = "none"
    save_every: Positive = 10
    keep_last: Positive = 1
    log_every: Positive = 20
    eval_every: Positive = 10


@section
class Recipe:
    model: Model
    data: Data
    optim: Optim
    schedule: Schedule
    runtime: Runtime
