"""ImageNet classification recipes (fine-tuning; in1k_linear and in1k_partial are these keys with their own
defaults): every key's type, range and default. The defaults are the official MAE recipe for ViT-B/16 (FINETUNE.md)."""
from benchmarks.recipe_schema import (CpuLinear, Features, Fraction, ImgSize, LayerDecay, NonNegative, NonNegativeFloat,
                                      Positive, Probability, section)


@section
class Model:
    img_size: ImgSize = 224
    global_pool: str = "avg"  # avg: mean of patch tokens + fc_norm | token: the cls token
    drop_path: Probability = 0.1
    num_heads: Positive | None = None  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
    # "paper": what global_pool picks, for every encoder; "method": the checkpoint format's own linear-evaluation
    # rule (mae_core/feature_rules.py, e.g. DINO's last-4 class tokens) - in1k_linear and in1k_partial with blocks=0
    # only (fine-tuning refuses it in one line)
    features: Features = "paper"


@section
class Data:
    augment: str = "finetune"  # finetune (RandAug + random erasing) | linear (crop + flip) | none
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float | tuple[float, ...] | None = None
    reprob: Probability = 0.25
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range
    crop_pct: float | None = None  # eval resize img_size / crop_pct; None: official 224/256 up to 224 px, 1.0 above
    subset: Positive | None = None  # N training images (subset_mode total) or N per class (per_class); deterministic
    subset_mode: str = "total"
    val_subset: Positive | None = None
    strict: bool = False  # True: an unreadable image fails the run; False: skipped and counted
    num_workers: NonNegative = 8


@section
class Mixup:
    mixup: NonNegativeFloat = 0.8
    cutmix: NonNegativeFloat = 1.0
    prob: Probability = 1.0
    switch_prob: Probability = 0.5
    mode: str = "batch"
    smoothing: Fraction = 0.1


@section
class Optim:
    name: str = "adamw"  # adamw | lars
    blr: NonNegativeFloat = 5e-4  # lr = blr * effective_batch / 256
    lr: NonNegativeFloat | None = None  # absolute lr; overrides blr when set
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: NonNegativeFloat = 0.05
    layer_decay: LayerDecay = 0.65
    min_lr: NonNegativeFloat = 1e-6
    clip_grad: float | None = None


@section
class Schedule:
    epochs: Positive = 100
    warmup_epochs: NonNegative = 5
    batch_size: Positive = 32  # 32 x 32 GPUs = 1024
    accum_iter: Positive = 1


@section
class Runtime:
    seed: NonNegative = 0
    device: str = "auto"
    amp: str = "bf16"
    cpu_linear: CpuLinear = "auto"
    save_every: Positive = 10
    keep_last: Positive = 1
    log_every: Positive = 20
    eval_every: Positive = 1
    ema_decay: Fraction | None = None  # the supervised baseline's EMA of the weights
    cache_features: bool = False  # frozen-encoder features computed once (needs data.augment="none")


@section
class Recipe:
    protocol: str = "finetune"
    blocks: NonNegative | None = None  # in1k_partial: how many of the last blocks are tuned
    model: Model
    data: Data
    mixup: Mixup
    optim: Optim
    schedule: Schedule
    runtime: Runtime
