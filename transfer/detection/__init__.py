"""COCO detection and instance segmentation: ViTDet's Mask R-CNN on a plain ViT (detectron2's design)."""
