# Figure 2 style reconstruction pictures.
mask_ratio = 0.75
seed = 0
num_images = 6
img_size = None  # None: the checkpoint's pretraining size
