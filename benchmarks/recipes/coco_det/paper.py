# The paper's COCO recipe (ViTDet mask_rcnn_vitdet_b_100ep, ViT-B): the schema's defaults as they are; ViT-L: paper_large, ViT-H: paper_huge.
# Batch 64 = 2 images x 32 GPUs.
