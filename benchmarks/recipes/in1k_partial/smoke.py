_base_ = ["../in1k_finetune/smoke.py"]
protocol = "partial"
blocks = 1
