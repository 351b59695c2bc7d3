# Minutes on 2 CPU cores: ViT-Tiny/16 on the 64 px synthetic scenes, slim heads, a few epochs.
_base_ = ["./base.py"]
model = dict(img_size=64, pretrain_img_size=64, window_size=2, drop_path=0.1, fpn_channels=64,
             anchor_sizes=(8, 16, 32, 64, 128), head_channels=64, box_convs=2, box_fc=256, mask_convs=2,
             rpn=dict(pre_nms_train=500, pre_nms_test=300, post_nms_train=200, post_nms_test=100, batch_per_image=64),
             roi_batch_per_image=64, detections_per_image=20)
data = dict(subset=400, val_subset=200, num_workers=0)
optim = dict(lr=2e-4, lr_batch=4)
schedule = dict(epochs=6, batch_size=4, eval_batch_size=8, warmup_iters=20)
runtime = dict(amp="none", save_every=2, log_every=5, eval_every=3)
