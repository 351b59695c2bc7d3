"""ADE20K segmentation recipes: UperNet on a ViT-B/16 MAE encoder, ADE20K 512x512, 160k iterations, as
mmsegmentation's configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py (the paper's Table 5 set-up)."""
from benchmarks.recipe_schema import (CpuLinear, Fraction, ImgSize, LayerDecay, NonNegative, NonNegativeFloat, Positive,
                                      Probability, section)


@section
class Model:
    img_size: ImgSize = 512  # the training crop, and the backbone's input (pos_embed and relative position tables)
    out_indices: tuple[NonNegative, ...] | None = None  # None: (3, 5, 7, 11) for 12 blocks, (7, 11, 15, 23) for 24
    rel_pos_bias: bool = True  # BEiT-style relative position bias per block, zero-initialised
    layer_scale_init: float | None = 1.0  # None: no layer scale
    drop_path: Probability = 0.1
    num_heads: Positive | None = None  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
    channels: Positive = 768  # UPerHead width
    aux_channels: Positive = 256  # FCNHead width (on pyramid level 2)
    pool_scales: tuple[Positive, ...] = (1, 2, 3, 6)
    dropout: Fraction = 0.1
    aux_weight: NonNegativeFloat = 0.4
    avg_non_ignore: bool = False  # mmseg's CrossEntropyLoss default: loss summed over labelled pixels / all pixels


@section
class Data:
    scale: tuple[Positive, Positive] = (2048, 512)  # random resize: ratio_range x this, keep ratio
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: Probability = 0.75
    flip_prob: Probability = 0.5
    photometric: bool = True
    test_scale: tuple[Positive, Positive] = (2048, 512)  # evaluation resize (short side 512)
    subset: Positive | None = None  # first N training images by name (deterministic)
    val_subset: Positive | None = None
    strict: bool = False  # True: an unreadable training image fails the run; False: skipped and counted
    num_workers: NonNegative = 4


@section
class Test:
    """Evaluation runs in fp32, as mmseg's."""
    mode: str = "slide"  # slide | whole
    crop_size: ImgSize = 512
    stride: Positive = 341


@section
class Optim:
    lr: NonNegativeFloat = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: NonNegativeFloat = 0.05
    layer_decay: LayerDecay = 0.65
    min_lr: NonNegativeFloat = 0.0
    power: float = 1.0
    warmup_ratio: float = 1e-6
    clip_grad: float | None = None


@section
class Schedule:
    iters: Positive = 160000
    warmup_iters: NonNegative = 1500
    eval_interval: Positive = 16000
    batch_size: Positive = 2  # 2 x 8 GPUs = 16


@section
class Runtime:
    seed: NonNegative = 0
    device: str = "auto"
    amp: str = "bf16"
    cpu_linear: CpuLinear = "auto"
    sync_bn: bool = True
    save_every: Positive = 1
    keep_last: Positive = 1
    log_every: Positive = 50
    eval_every: Positive = 1


@section
class Recipe:
    model: Model
    data: Data
    test: Test
    optim: Optim
    schedule: Schedule
    runtime: Runtime
