_base_ = ["../in1k_finetune/subset.py"]
linear_probe = dict(schedule=dict(epochs=10, warmup_epochs=1, batch_size=256))  # K = 0: the in1k_linear subset recipe
