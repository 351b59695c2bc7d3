# Paper Table 1(f): mask sampling strategy and its masking ratio (the paper's rows: random 75%, block 50%,
# block 75%, grid 75%).
knob = ("model.mask_strategy", "model.mask_ratio")
values = [("random", 0.75), ("block", 0.5), ("block", 0.75), ("grid", 0.75)]
table = "table1_mask_strategy"
