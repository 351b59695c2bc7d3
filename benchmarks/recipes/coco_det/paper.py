# The paper's COCO recipe (ViTDet, ViT-B): base.py as is. ViT-L: --set optim.layer_decay=0.8 --set model.drop_path=0.4;
# ViT-H: 0.9 and 0.5. Batch 64 = 2 images x 32 GPUs.
_base_ = ["./base.py"]
