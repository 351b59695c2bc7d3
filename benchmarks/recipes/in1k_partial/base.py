# Partial fine-tuning (paper Figure 9): the fine-tuning recipe with only the last `blocks` blocks
# (+ final norm + head) trained; blocks=0 is the linear probe (the `linear_probe` sections, _linear_probe.py).
_base_ = ["../in1k_finetune/base.py", "./_linear_probe.py"]
protocol = "partial"
blocks = 1
blocks_part = "all"  # all | mlp (only the MLP sub-block of the tuned blocks; paper Fig. 9 "MLP only")
# ((K, epochs), ...): the epochs of the K listed (others: schedule.epochs), e.g. ((1, 200), (4, 100)). The paper
# fine-tunes each K for the best of 50, 100 and 200 epochs (fewer blocks need longer; appendix A.1).
schedule = dict(epochs_per_blocks=())
# model.features: "paper", or with blocks=0 (the linear probe) "method" as in1k_linear (refused for blocks > 0)
model = dict(features="paper")
