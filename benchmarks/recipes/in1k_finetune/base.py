# End-to-end fine-tuning, the official MAE recipe for ViT-B/16 (FINETUNE.md).
protocol = "finetune"
blocks = None  # in1k_partial: how many of the last blocks are tuned
model = dict(img_size=224, global_pool="avg", drop_path=0.1,  # avg: mean of patch tokens + fc_norm
             num_heads=None)  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
data = dict(
    augment="finetune",  # finetune (RandAug + random erasing) | linear (crop + flip) | none
    auto_augment="rand-m9-mstd0.5-inc1",
    color_jitter=None,
    reprob=0.25,
    crop_scale=(0.08, 1.0),  # RandomResizedCrop area range
    crop_pct=None,  # eval resize img_size / crop_pct; None: official 224/256 up to 224 px, 1.0 above
    subset=None,  # N training images (subset_mode total) or N per class (per_class); deterministic
    subset_mode="total",
    val_subset=None,
    strict=False,  # True: an unreadable image fails the run; False: skipped and counted
    num_workers=8,
)
mixup = dict(mixup=0.8, cutmix=1.0, prob=1.0, switch_prob=0.5, mode="batch", smoothing=0.1)
optim = dict(name="adamw", blr=5e-4, lr=None, betas=(0.9, 0.999), weight_decay=0.05, layer_decay=0.65,
             min_lr=1e-6, clip_grad=None)
schedule = dict(epochs=100, warmup_epochs=5, batch_size=32, accum_iter=1)  # 32 x 32 GPUs = 1024
runtime = dict(seed=0, device="auto", amp="bf16", cpu_linear="auto", save_every=10, keep_last=1, log_every=20,
               eval_every=1, ema_decay=None, cache_features=False)
