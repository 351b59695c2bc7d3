# Paper Table 1(a): decoder depth (Transformer blocks), fine-tune and linear-probe top-1.
knob = "model.decoder_depth"
values = [1, 2, 4, 8, 12]
table = "table1_decoder_depth"
