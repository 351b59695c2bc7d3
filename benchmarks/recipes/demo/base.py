# `mae-bench demo`: synthetic scenes -> tiny MAE pretraining -> reconstructions.
synth_recipe = "base"  # benchmarks/recipes/synth/
pretrain_recipe = "smoke"  # benchmarks/recipes/pretrain/
pretrain_overrides = dict()  # e.g. {"schedule.epochs": 2}
