# ViTDet mask_rcnn_vitdet_l_100ep (ViT-L): layer decay 0.8, drop path 0.4, the rest as ViT-B.
_base_ = ["./paper.py"]
model = dict(drop_path=0.4)
optim = dict(layer_decay=0.8)
