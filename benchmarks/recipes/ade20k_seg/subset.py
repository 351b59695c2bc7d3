# Regression runs on a real ADE20K subset: 2,000 training and 500 validation images, 8k iterations.
data = dict(subset=2000, val_subset=500)
schedule = dict(iters=8000, warmup_iters=500, eval_interval=2000)
