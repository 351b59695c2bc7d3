# Seconds on 2 CPU cores: 64 px scenes, augmentation off and cached features.
model = dict(img_size=64)
data = dict(augment="none", num_workers=0)
optim = dict(blr=10.0)  # LARS: the trust ratio (0.001 ||w|| / ||g||) scales the head updates down; tuned on the scenes
schedule = dict(epochs=30, warmup_epochs=3, batch_size=64)
runtime = dict(amp="none", cache_features=True, save_every=30, log_every=5)
