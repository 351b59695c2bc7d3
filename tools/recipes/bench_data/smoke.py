# Seconds: a few small images, one process, one repeat.
num_images = 4
image_size = [96, 72]
procs = 1
passes = 1
repeats = 1
