_base_ = ["../in1k_finetune/smoke.py"]
protocol = "partial"
blocks = 1
blocks_part = "all"  # all | mlp (only the MLP sub-block of the tuned blocks; paper Fig. 9 "MLP only")
