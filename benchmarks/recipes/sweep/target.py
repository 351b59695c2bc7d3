# Paper Table 1(d): reconstruction target, pixels without or with per-patch normalization (the paper's PCA and
# dVAE-token rows have no implementation here).
knob = "model.norm_pix_loss"
values = [False, True]
table = "table1_norm_pix_loss"
