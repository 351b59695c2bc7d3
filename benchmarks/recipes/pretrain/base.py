# MAE pretraining: every knob of the paper's ablations lives here (Table 1, Figure 5).
model = dict(
    arch="vit_base_patch16",
    img_size=224,
    mask_ratio=0.75,
    mask_strategy="random",  # random | block | grid
    mask_tokens_in_encoder=False,
    norm_pix_loss=True,
    decoder_depth=8,
    decoder_embed_dim=512,
    decoder_num_heads=16,
)
data = dict(
    augment="rrc",  # none | fixed_crop | rrc | rrc_jitter
    crop_scale=(0.2, 1.0),
    subset=None,  # use N images, the same N for every seed
    strict=True,  # False: skip unreadable images with a warning
    num_workers=8,
)
optim = dict(
    blr=1.5e-4,  # lr = blr * effective_batch / 256
    lr=None,  # absolute lr; overrides blr when set
    betas=(0.9, 0.95),
    weight_decay=0.05,
    min_lr=0.0,
)
schedule = dict(
    epochs=800,
    warmup_epochs=40,
    batch_size=64,  # per process
    accum_iter=1,
)
runtime = dict(
    seed=0,
    device="auto",  # auto | cpu | cuda
    cpu_linear="auto",  # auto (timed at start-up) | onednn | aten: fp32 Linear products on the CPU (mae_core.cpu_linear)
    amp="bf16",  # bf16 | fp16 | none (CUDA only)
    compile=False,
    save_every=20,
    keep_last=2,
    log_every=20,
    tensorboard=False,
)
# k-NN monitor (transfer/classification/knn_monitor.py, as lightly's KNNCallback and DINO's eval_knn):
# every knn_every epochs and the last, the encoder's weighted k-NN top-1 / top-5 on a labelled split, logged in
# log.jsonl (knn_top1, knn_top5) and drawn under the loss in RUN/monitor.png. 0: off (pretraining unchanged).
monitor = dict(
    knn_every=0,
    knn_data=None,  # an ImageFolder root with train/ and val/ (None: the root of the train/ that pretraining reads)
    knn_k=20,
    knn_temperature=0.07,
    knn_global_pool="token",  # token: cls token after the final norm | avg: mean patch token after fc_norm
    knn_train_subset=None,  # N training images (the neighbours), the same N every time; None: all
    knn_val_subset=None,  # N validation images scored; None: all
)
