# ViT-L/16 fine-tuning (official FINETUNE.md): 50 epochs, blr 1e-3, layer decay 0.75, drop path 0.2.
# ViT-H/14: paper_huge (drop path 0.3). The paper's Table 9 lists 0.1 (B/L) / 0.2 (H); the official scripts win.
model = dict(drop_path=0.2)
optim = dict(blr=1e-3, layer_decay=0.75)
schedule = dict(epochs=50, warmup_epochs=5)
