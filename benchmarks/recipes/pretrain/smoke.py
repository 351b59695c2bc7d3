# About a minute on 2 CPU cores: tiny ViT on 64 px synthetic scenes, a short schedule with a high lr.
model = dict(arch="vit_tiny_patch16", img_size=64, decoder_depth=2, decoder_embed_dim=128, decoder_num_heads=4)
data = dict(num_workers=0)
optim = dict(blr=6e-3)
schedule = dict(epochs=40, warmup_epochs=4, batch_size=32)
runtime = dict(amp="none", save_every=10, keep_last=2, log_every=5)
