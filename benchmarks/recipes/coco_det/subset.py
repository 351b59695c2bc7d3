# Regression runs on a real COCO subset: 5,000 training images, 500 validation images, a short schedule.
data = dict(subset=5000, val_subset=500)
schedule = dict(epochs=12, warmup_iters=100)
runtime = dict(save_every=4, eval_every=4)
