# The paper's Figure 9 (ViT-L): the ViT-L fine-tuning recipe for K >= 1, the linear probe for K = 0.
_base_ = ["../in1k_finetune/paper.py"]
