_base_ = ["../in1k_finetune/smoke.py", "./_linear_probe.py"]
protocol = "partial"
blocks = 1
blocks_part = "all"  # all | mlp (only the MLP sub-block of the tuned blocks; paper Fig. 9 "MLP only")
schedule = dict(epochs_per_blocks=())  # ((K, epochs), ...) for the K listed
# K = 0: the in1k_linear smoke recipe
linear_probe = dict(data=dict(augment="none"), optim=dict(blr=10.0), schedule=dict(epochs=30, warmup_epochs=3, batch_size=64),
                    runtime=dict(cache_features=True, save_every=30))
# model.features: "paper", or with blocks=0 (the linear probe) "method" as in1k_linear (refused for blocks > 0)
model = dict(features="paper")
