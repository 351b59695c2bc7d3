_base_ = ["../in1k_finetune/paper.py"]
protocol = "partial"
blocks = 1
