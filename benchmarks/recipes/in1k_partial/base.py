# Partial fine-tuning (paper Figure 9): the fine-tuning recipe with only the last `blocks` blocks
# (+ final norm + head) trained; blocks=0 is the head alone on frozen features.
_base_ = ["../in1k_finetune/base.py"]
protocol = "partial"
blocks = 1
blocks_part = "all"  # all | mlp (only the MLP sub-block of the tuned blocks; paper Fig. 9 "MLP only")
