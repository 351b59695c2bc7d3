"""ADE20K semantic segmentation: UperNet."""
from . import register_task

register_task("ade20k_seg", "transfer.segmentation.train:run_segmentation", data="ade20k", metrics=("mIoU",),
              eval_data="ADE20K val", options=("eval_only", "weights", "save_preds"), table="ade20k",
              table_title="ADE20K semantic segmentation, UperNet: mIoU (paper Table 5 layout)")
