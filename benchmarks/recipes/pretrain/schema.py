"""MAE pretraining recipes: every knob of the paper's ablations (Table 1, Figure 5), its type, range and default."""
from typing import Literal

from benchmarks.recipe_schema import (CpuLinear, ImgSize, MaskRatio, NonNegative, NonNegativeFloat, Path, Positive,
                                      PositiveFloat, section)


@section
class Model:
    arch: str = "vit_base_patch16"
    img_size: ImgSize = 224
    mask_ratio: MaskRatio = 0.75
    mask_strategy: str = "random"  # random | block | grid
    mask_tokens_in_encoder: bool = False
    norm_pix_loss: bool = True
    decoder_depth: int = 8
    decoder_embed_dim: int = 512
    decoder_num_heads: int = 16


@section
class Data:
    augment: str = "rrc"  # none | fixed_crop | rrc | rrc_jitter
    crop_scale: tuple[float, float] = (0.2, 1.0)
    subset: Positive | None = None  # use N images, the same N for every seed
    strict: bool = True  # False: skip unreadable images with a warning
    num_workers: NonNegative = 8


@section
class Optim:
    blr: NonNegativeFloat = 1.5e-4  # lr = blr * effective_batch / 256
    lr: NonNegativeFloat | None = None  # absolute lr; overrides blr when set
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: NonNegativeFloat = 0.05
    min_lr: NonNegativeFloat = 0.0


@section
class Schedule:
    epochs: Positive = 800
    warmup_epochs: NonNegative = 40
    batch_size: Positive = 64  # per process
    accum_iter: Positive = 1


@section
class Runtime:
    seed: NonNegative = 0
    device: str = "auto"  # auto | cpu | cuda
    # auto (timed at start-up) | onednn | aten: fp32 Linear products on the CPU (mae_core.cpu_linear.CHOICES; this
    # file stays torch-free)
    cpu_linear: CpuLinear = "auto"
    amp: str = "bf16"  # bf16 | fp16 | none (CUDA only)
    compile: bool = False
    save_every: Positive = 20
    keep_last: Positive = 2
    log_every: Positive = 20
    tensorboard: bool = False


@section
class Monitor:
    """k-NN monitor (transfer/classification/knn_monitor.py, as lightly's KNNCallback and DINO's eval_knn): every
    knn_every epochs and the last, the encoder's weighted k-NN top-1 / top-5 on a labelled split, logged in log.jsonl
    (knn_top1, knn_top5) and drawn under the loss in RUN/monitor.png. 0: off (pretraining unchanged)."""
    knn_every: NonNegative = 0
    # an ImageFolder root with train/ and val/ (None: the root of the train/ that pretraining reads)
    knn_data: Path | None = None
    knn_k: Positive = 20  # at most the monitor's training images: checked when they are known
    knn_temperature: PositiveFloat = 0.07
    # token: cls token after the final norm | avg: mean patch token after fc_norm (mae_core.vit.GLOBAL_POOLS)
    knn_global_pool: Literal["token", "avg"] = "token"
    knn_train_subset: Positive | None = None  # N training images (the neighbours), the same N every time; None: all
    knn_val_subset: Positive | None = None  # N validation images scored; None: all


@section
class Recipe:
    model: Model
    data: Data
    optim: Optim
    schedule: Schedule
    runtime: Runtime
    monitor: Monitor
