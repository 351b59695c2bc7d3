data = dict(subset=100, subset_mode="per_class", val_subset=10000)
schedule = dict(epochs=10, warmup_epochs=1, batch_size=256)
