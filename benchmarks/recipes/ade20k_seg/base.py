# UperNet on a ViT-B/16 MAE encoder, ADE20K 512x512, 160k iterations: mmsegmentation's
# configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py (the paper's Table 5 set-up).
model = dict(
    img_size=512,  # the training crop, and the backbone's input (pos_embed and relative position tables)
    out_indices=None,  # None: (3, 5, 7, 11) for 12 blocks, (7, 11, 15, 23) for 24
    rel_pos_bias=True,  # BEiT-style relative position bias per block, zero-initialised
    layer_scale_init=1.0,  # None: no layer scale
    drop_path=0.1,
    num_heads=None,  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
    channels=768,  # UPerHead width
    aux_channels=256,  # FCNHead width (on pyramid level 2)
    pool_scales=(1, 2, 3, 6),
    dropout=0.1,
    aux_weight=0.4,
    avg_non_ignore=False,  # mmseg's CrossEntropyLoss default: loss summed over labelled pixels / all pixels
)
data = dict(
    scale=(2048, 512),  # random resize: ratio_range x this, keep ratio
    ratio_range=(0.5, 2.0),
    cat_max_ratio=0.75,
    flip_prob=0.5,
    photometric=True,
    test_scale=(2048, 512),  # evaluation resize (short side 512)
    subset=None,  # first N training images by name (deterministic)
    val_subset=None,
    strict=False,  # True: an unreadable training image fails the run; False: skipped and counted
    num_workers=4,
)
test = dict(mode="slide", crop_size=512, stride=341)  # or mode="whole"; evaluation runs in fp32, as mmseg's
optim = dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05, layer_decay=0.65, min_lr=0.0, power=1.0,
             warmup_ratio=1e-6, clip_grad=None)
schedule = dict(iters=160000, warmup_iters=1500, eval_interval=16000, batch_size=2)  # 2 x 8 GPUs = 16
runtime = dict(seed=0, device="auto", amp="bf16", cpu_linear="auto", sync_bn=True, save_every=1, keep_last=1, log_every=50, eval_every=1)
