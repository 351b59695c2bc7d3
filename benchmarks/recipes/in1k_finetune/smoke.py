# Minutes on 2 CPU cores: 64 px synthetic scenes, a few epochs.
model = dict(img_size=64, drop_path=0.1)
# the label is the scene's dominant object: crops must keep most of the scene to keep it
data = dict(num_workers=0, auto_augment="rand-m9-mstd0.5-inc1", crop_scale=(0.5, 1.0), reprob=0.0)
mixup = dict(mixup=0.0, cutmix=0.0)  # a few hundred images: Mixup/CutMix would drown the signal
optim = dict(blr=2e-3, layer_decay=0.75)
schedule = dict(epochs=15, warmup_epochs=1, batch_size=32)
runtime = dict(amp="none", save_every=5, log_every=5)
