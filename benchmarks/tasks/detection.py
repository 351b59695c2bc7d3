"""COCO detection and instance segmentation: ViTDet-style Mask R-CNN."""
from . import register_task

register_task("coco_det", "transfer.detection.train:run_detection", data="coco", metrics=("bbox_AP", "segm_AP"),
              eval_data="COCO val2017", options=("eval_only", "weights"), table="coco",
              table_title="COCO detection and instance segmentation, Mask R-CNN: APbox and APmask "
                          "(paper Table 4 layout)")
