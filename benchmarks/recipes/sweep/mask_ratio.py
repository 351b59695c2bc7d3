# Paper Figure 5: masking ratio 10% to 90% (and the default 75%), fine-tune and linear-probe top-1.
knob = "model.mask_ratio"
values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9]
table = "fig5_mask_ratio"
