# Minutes on 2 CPU cores: ViT-Tiny/16 on the 64 px synthetic scenes (a 4 x 4 token grid), a narrow head,
# whole-image inference; a checkpoint half-way, one evaluation at the end.
model = dict(img_size=64, channels=64, aux_channels=32, drop_path=0.0)
data = dict(scale=(256, 64), test_scale=(256, 64), num_workers=0)
test = dict(mode="whole", crop_size=64, stride=32)
optim = dict(lr=1e-3, layer_decay=0.75)
schedule = dict(iters=400, warmup_iters=40, eval_interval=200, batch_size=16)
runtime = dict(amp="none", log_every=10, eval_every=2)
