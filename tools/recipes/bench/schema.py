"""`python -m tools.speed` recipes: training-step throughput, our MAE vs HF ViTMAEForPreTraining, and the paper's
Table 2 (mask tokens x decoder depth)."""
from benchmarks.recipe_schema import CpuLinear, ImgSize, MaskRatio, NonNegative, NonNegativeFloat, Positive, section


@section
class Recipe:
    arch: str = "vit_base_patch16"
    img_size: ImgSize = 224
    batch_size: Positive = 8
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 on CUDA only)
    # auto (timed at start-up) | onednn | aten: how our fp32 Linear layers multiply on the CPU (mae_core.cpu_linear)
    cpu_linear: CpuLinear = "auto"
    threads: Positive | None = None  # torch.set_num_threads on CPU; None keeps torch's default
    steps: Positive = 10  # timed steps per measurement (the median step time is reported)
    warmup: NonNegative = 3
    repeats: Positive = 1  # run every measurement this often, interleaved; the median img/s is reported
    seed: NonNegative = 0
    mask_ratio: MaskRatio = 0.75
    norm_pix_loss: bool = True
    decoder_depth: Positive = 8
    decoder_embed_dim: Positive = 512
    decoder_num_heads: Positive = 16
    lr: NonNegativeFloat = 1.5e-4
    weight_decay: NonNegativeFloat = 0.05
    compare_hf: bool = True  # needs `pip install transformers` (the `bench` extra); skipped with a note otherwise
    hf_attn: str = "sdpa"  # sdpa | eager; falls back to eager when unsupported
    table2: bool = True
    table2_archs: list[str] = ["vit_base_patch16", "vit_large_patch16"]
    decoder_depths: list[Positive] = [1, 8]
    table2_steps: Positive | None = None  # None: `steps`
    table2_warmup: NonNegative | None = None  # None: `warmup`
    out: str | None = "benchmarks/RESULTS.md"  # None: print only
