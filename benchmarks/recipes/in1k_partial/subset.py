_base_ = ["../in1k_finetune/subset.py"]
protocol = "partial"
blocks = 1
