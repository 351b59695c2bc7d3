"""Linear probing recipes: the classification keys (in1k_finetune/schema.py) with the official MAE recipe's
defaults (LINPROBE): frozen encoder, cls token, BN(affine=False) + Linear, LARS, blr 0.1, no weight decay, effective
batch 16384, 90 epochs, 10 warm-up, crop + flip."""
from benchmarks.recipe_schema import with_defaults
from benchmarks.recipes.in1k_finetune.schema import Recipe as Classification

Recipe = with_defaults(
    Classification,
    protocol="linear",
    model=dict(global_pool="token", drop_path=0.0),
    data=dict(augment="linear", auto_augment=None, reprob=0.0),
    mixup=dict(mixup=0.0, cutmix=0.0, smoothing=0.0),
    optim=dict(name="lars", blr=0.1, weight_decay=0.0, layer_decay=1.0, min_lr=0.0),
    schedule=dict(epochs=90, warmup_epochs=10, batch_size=512),  # 512 x 32 GPUs = 16384
)
