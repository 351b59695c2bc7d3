"""ADE20K semantic segmentation: UperNet."""
from . import register_task

# aAcc (pixel accuracy, mmseg's third metric) is a regression key beside mIoU: it moves less from seed to seed, and
# a label-mapping bug that leaves mIoU inside its tolerance (ADE20K labels not reduced) drops it by ten points
register_task("ade20k_seg", "transfer.segmentation.train:run_segmentation", data="ade20k", metrics=("mIoU", "aAcc"),
              table_metrics=("mIoU",),
              eval_data="ADE20K val", options=("eval_only", "weights", "save_preds"), table="ade20k",
              table_title="ADE20K semantic segmentation, UperNet: mIoU (paper Table 5 layout)")
