# Minutes on 2 CPU cores: ViT-Tiny/16 on the 64 px synthetic scenes upsampled to 128 px (an 8 x 8 grid: at 64 px
# most objects are smaller than one patch), slim heads, one pass over the 1,600 training scenes. Mild scale
# jitter: a 400-update schedule cannot absorb LSJ's 0.1-2.0 range. torchvision's head init: detectron2's small
# predictor init (normal 0.01 / 0.001) learns far slower in a few hundred updates (100-update test: bbox AP 35 -> 2).
model = dict(img_size=128, pretrain_img_size=64, window_size=4, drop_path=0.1, fpn_channels=64,
             anchor_sizes=(16, 32, 64, 128, 256), head_channels=64, box_convs=2, box_fc=256, mask_convs=2,
             rpn=dict(pre_nms_train=500, pre_nms_test=300, post_nms_train=200, post_nms_test=100, batch_per_image=64),
             roi_batch_per_image=64, detections_per_image=20, head_init="torchvision")
data = dict(scale_range=(0.8, 1.25), subset=None, val_subset=400, num_workers=0)
optim = dict(lr=3e-4, lr_batch=4)
schedule = dict(epochs=1, batch_size=4, eval_batch_size=8, warmup_iters=20)
runtime = dict(amp="none", save_every=1, log_every=5, eval_every=1)
