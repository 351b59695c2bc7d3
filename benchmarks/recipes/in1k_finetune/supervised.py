# Supervised training from scratch (paper appendix A.2): wd 0.3, 300 epochs (ViT-B; 200 for L/H), 20 warm-up,
# AdamW (0.9, 0.95), RandAug, label smoothing 0.1, mixup 0.8, cutmix 1.0, drop path 0.1, EMA 0.9999.
# Use with --ckpt scratch --arch ...; its checkpoint is then a valid --ckpt supervised:PATH.
_base_ = ["./base.py"]
optim = dict(blr=1e-4, betas=(0.9, 0.95), weight_decay=0.3, layer_decay=1.0)
schedule = dict(epochs=300, warmup_epochs=20, batch_size=128)  # 128 x 32 GPUs = 4096
runtime = dict(ema_decay=0.9999)
