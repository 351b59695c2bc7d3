# Supervised ViT-B training from scratch (paper appendix A.2, Table 11): AdamW (0.9, 0.95), blr 1e-4, wd 0.3,
# batch 4096, 20 warm-up of 300 epochs, RandAug (9, 0.5), label smoothing 0.1, mixup 0.8, cutmix 1.0,
# drop path 0.1, EMA 0.9999; no other regularisation (no random erasing). The reported top1 and the
# checkpoints' "model" are the EMA model (82.3 for ViT-B; top1_raw is without EMA, 82.1 in the paper).
# Use with --ckpt scratch --arch vit_base_patch16; its checkpoint-last.pth is then a valid --ckpt supervised:PATH.
# ViT-L / ViT-H: supervised_large / supervised_huge.
model = dict(drop_path=0.1)
data = dict(reprob=0.0)
optim = dict(blr=1e-4, betas=(0.9, 0.95), weight_decay=0.3, layer_decay=1.0)
schedule = dict(epochs=300, warmup_epochs=20, batch_size=128)  # 128 x 32 GPUs = 4096
runtime = dict(ema_decay=0.9999)
