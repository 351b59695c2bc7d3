_base_ = ["../in1k_finetune/smoke.py"]
# K = 0: the in1k_linear smoke recipe
linear_probe = dict(data=dict(augment="none"), optim=dict(blr=10.0), schedule=dict(epochs=30, warmup_epochs=3, batch_size=64),
                    runtime=dict(cache_features=True, save_every=30))
