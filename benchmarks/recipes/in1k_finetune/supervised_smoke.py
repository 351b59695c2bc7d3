# The supervised-from-scratch baseline at smoke scale (64 px synthetic scenes, 2 CPU cores). The paper's recipe
# (`supervised.py`: RandAug, drop path, EMA, weight decay 0.3, beta2 0.95) is built for 300 ImageNet epochs; on a
# few thousand shape scenes it keeps a ViT on the ln 8 loss plateau (top-1 15 %: benchmarks/EXPERIMENTS.md). What
# leaves the plateau: every labelled image, no augmentation or stochastic depth, a plain AdamW at lr 3e-4 for
# 30 epochs (1,110 updates at 2,400 images). Kept from the paper: AdamW, cosine with warm-up, label smoothing 0.1.
_base_ = ["./smoke.py"]
model = dict(drop_path=0.0)
data = dict(augment="none")
optim = dict(blr=1.2e-3, betas=(0.9, 0.999), weight_decay=0.05, layer_decay=1.0)  # lr 3e-4 at batch 64
schedule = dict(epochs=30, warmup_epochs=3, batch_size=64)
