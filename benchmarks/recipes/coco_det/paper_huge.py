# ViTDet mask_rcnn_vitdet_h_75ep (ViT-H/14, run at patch 16 as ViTDet does): layer decay 0.9, drop path 0.5,
# weight decay on every parameter (the config sets weight_decay_norm=None and no pos_embed override),
# 75 epochs: 138,281 iterations at batch 64 with x0.1 at 122,916 and 133,159.
_base_ = ["./paper.py"]
model = dict(drop_path=0.5)
optim = dict(layer_decay=0.9, weight_decay_norm=None, zero_decay=())
schedule = dict(epochs=75, max_iter=138281, milestones=(122916, 133159))
