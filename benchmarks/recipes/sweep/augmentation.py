# Paper Table 1(e): data augmentation of the pretraining images.
knob = "data.augment"
values = ["none", "fixed_crop", "rrc", "rrc_jitter"]
table = "table1_augment"
