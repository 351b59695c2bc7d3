# `mae-bench demo`: synthetic scenes -> the `ci` suite (MAE pretraining, supervised baseline, five tasks + knn x three
# inits, tables, regression check against benchmarks/baselines/ci.json).
suite = "ci"  # benchmarks/recipes/suite/
suite_overrides = dict()  # e.g. {"pretrain.sets": {"schedule.epochs": 2}}
