# Paper Table 1(b): decoder width (channels; 16 heads at paper scale), fine-tune and linear-probe top-1.
knob = "model.decoder_embed_dim"
values = [128, 256, 512, 768, 1024]
table = "table1_decoder_embed_dim"
