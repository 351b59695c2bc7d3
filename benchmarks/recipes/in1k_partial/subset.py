_base_ = ["../in1k_finetune/subset.py", "./_linear_probe.py"]
protocol = "partial"
blocks = 1
blocks_part = "all"  # all | mlp (only the MLP sub-block of the tuned blocks; paper Fig. 9 "MLP only")
schedule = dict(epochs_per_blocks=())  # ((K, epochs), ...) for the K listed
linear_probe = dict(schedule=dict(epochs=10, warmup_epochs=1, batch_size=256))  # K = 0: the in1k_linear subset recipe
# model.features: "paper", or with blocks=0 (the linear probe) "method" as in1k_linear (refused for blocks > 0)
model = dict(features="paper")
