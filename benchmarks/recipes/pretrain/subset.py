# Regression runs on a real ImageNet subset: short schedule, same recipe otherwise.
data = dict(subset=10000)
schedule = dict(epochs=20, warmup_epochs=2, batch_size=64)
runtime = dict(save_every=5)
