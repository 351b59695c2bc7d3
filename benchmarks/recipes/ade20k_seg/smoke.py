# Minutes on 2 CPU cores: ViT-Tiny/16 on the 64 px synthetic scenes, a narrow head, whole-image inference.
_base_ = ["./base.py"]
model = dict(channels=64, aux_channels=32, drop_path=0.0)
data = dict(scale=(256, 64), crop_size=64, test_scale=(256, 64), num_workers=0)
test = dict(mode="whole", crop_size=64, stride=32)
optim = dict(lr=1e-3, layer_decay=0.75)
schedule = dict(iters=300, warmup_iters=30, eval_interval=300, batch_size=16)
runtime = dict(amp="none", log_every=10)
