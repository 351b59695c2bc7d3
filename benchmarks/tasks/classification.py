"""The ImageNet protocols of the paper (linear probe, partial and full fine-tuning) and DINO's k-NN probe."""
from . import register_task

for _name in ("in1k_linear", "in1k_partial", "in1k_finetune"):
    register_task(_name, "transfer.classification.train:run_classification", data="imagenet", metrics=("top1",),
                  eval_data="ImageNet-1K", classification=True, table="in1k")
register_task("knn", "transfer.classification.knn:run_knn", data="imagenet", metrics=("top1",),
              eval_data="ImageNet-1K", classification=True, table_metrics=("top1", "top5"),
              table_title="ImageNet-1K weighted k-NN on frozen features (DINO's eval_knn): top-1 and top-5")
