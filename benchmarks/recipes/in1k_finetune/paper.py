# ViT-L/16 (and H/14) fine-tuning: 50 epochs, blr 1e-3, layer decay 0.75, drop path 0.2 (H: 0.3).
_base_ = ["./base.py"]
model = dict(drop_path=0.2)
optim = dict(blr=1e-3, layer_decay=0.75)
schedule = dict(epochs=50, warmup_epochs=5)
