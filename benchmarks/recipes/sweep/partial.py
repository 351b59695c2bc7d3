# Paper Figure 9: partial fine-tuning of one MAE (ViT-L/16, the Table 1 default), top-1 by the number K of last
# blocks tuned; K = 0 is the linear probe, K = 24 full fine-tuning. One pretraining, one in1k_partial run per K.
knob = "blocks"
values = [0, 1, 2, 4, 6, 12, 18, 24]
stage = "task"
tasks = ["in1k_partial"]
table = "fig9_partial"
scales = dict(subset=dict(values=[0, 1, 2, 4, 6, 8, 12]), smoke=dict(values=[0, 1, 2, 4, 8, 12]),  # ViT-B, ViT-Ti: 12
              ci=dict(values=[0, 1, 2, 4, 6]))  # ViT-Micro: 6 blocks
