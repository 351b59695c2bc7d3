# Real-data regressions: 100 training images per class as the neighbours, 10,000 validation images.
data = dict(subset=100, subset_mode="per_class", val_subset=10000)
