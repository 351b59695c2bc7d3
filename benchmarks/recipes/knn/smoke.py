# Seconds on 2 CPU cores: the 64 px synthetic scenes.
model = dict(img_size=64)
data = dict(num_workers=0)
schedule = dict(batch_size=64)
