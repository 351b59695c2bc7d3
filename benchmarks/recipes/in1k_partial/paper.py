# The paper's Figure 9 (ViT-L): the ViT-L fine-tuning recipe for K >= 1, the linear probe for K = 0.
_base_ = ["../in1k_finetune/paper.py", "./_linear_probe.py"]
protocol = "partial"
blocks = 1
blocks_part = "all"  # all | mlp (only the MLP sub-block of the tuned blocks; paper Fig. 9 "MLP only")
schedule = dict(epochs_per_blocks=())  # ((K, epochs), ...); the paper takes the best of 50 / 100 / 200 per K
# model.features: "paper", or with blocks=0 (the linear probe) "method" as in1k_linear (refused for blocks > 0)
model = dict(features="paper")
