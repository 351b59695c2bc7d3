# Paper Figure 9: "tuning 0 blocks is linear probing". With blocks=0 these sections replace the fine-tuning
# ones, so K = 0 runs the in1k_linear protocol (LARS, BN head on the cls token, crop + flip, no Mixup);
# a test keeps them equal to the in1k_linear recipe of the same name. Override them as linear_probe.<key>.
linear_probe = dict(
    model=dict(global_pool="token", drop_path=0.0),
    data=dict(augment="linear", auto_augment=None, reprob=0.0, crop_scale=(0.08, 1.0)),
    mixup=dict(mixup=0.0, cutmix=0.0, smoothing=0.0),
    optim=dict(name="lars", blr=0.1, weight_decay=0.0, layer_decay=1.0, min_lr=0.0),
    schedule=dict(epochs=90, warmup_epochs=10, batch_size=512),
)
