# The paper's ViT-L recipe: effective batch 4096 (64 x 8 GPUs x accum 8), 800 epochs.
model = dict(arch="vit_large_patch16")
schedule = dict(epochs=800, warmup_epochs=40, batch_size=64, accum_iter=8)
