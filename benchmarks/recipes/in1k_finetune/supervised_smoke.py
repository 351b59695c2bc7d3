# The supervised-from-scratch recipe at smoke scale (64 px synthetic scenes, 2 CPU cores).
_base_ = ["./smoke.py"]
optim = dict(blr=2e-3, betas=(0.9, 0.95), weight_decay=0.3, layer_decay=1.0)
schedule = dict(epochs=20, warmup_epochs=2)
runtime = dict(ema_decay=0.99)
