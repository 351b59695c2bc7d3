# Paper Table 1(c): the encoder with or without mask tokens [M] (the paper's default skips them).
knob = "model.mask_tokens_in_encoder"
values = [False, True]
table = "table1_mask_tokens_in_encoder"
