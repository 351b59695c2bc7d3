# Linear probing, the official MAE recipe (LINPROBE): frozen encoder, cls token, BN(affine=False) + Linear,
# LARS, blr 0.1, no weight decay, effective batch 16384, 90 epochs, 10 warm-up, crop + flip.
protocol = "linear"
blocks = None
model = dict(img_size=224, global_pool="token", drop_path=0.0,
             num_heads=None)  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
data = dict(augment="linear", auto_augment=None, color_jitter=None, reprob=0.0, crop_scale=(0.08, 1.0), crop_pct=None, subset=None,
            subset_mode="total", val_subset=None, strict=False, num_workers=8)
mixup = dict(mixup=0.0, cutmix=0.0, prob=1.0, switch_prob=0.5, mode="batch", smoothing=0.0)
optim = dict(name="lars", blr=0.1, lr=None, betas=(0.9, 0.999), weight_decay=0.0, layer_decay=1.0, min_lr=0.0,
             clip_grad=None)
schedule = dict(epochs=90, warmup_epochs=10, batch_size=512, accum_iter=1)  # 512 x 32 GPUs = 16384
runtime = dict(seed=0, device="auto", amp="bf16", cpu_linear="auto", save_every=10, keep_last=1, log_every=20,
               eval_every=1, ema_decay=None, cache_features=False)  # cache_features needs data.augment="none"
