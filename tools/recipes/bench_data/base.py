# `python -m tools.data_speed`: decode + augmentation img/s per core of the pretraining input pipeline (tools/data_speed.py).
data = None  # a folder of JPEGs (the first `num_images`, sorted); None: synthetic photo-like JPEGs in a temp folder
num_images = 64
image_size = [500, 375]  # synthetic images' width x height (an ImageNet-typical size)
quality = 90  # synthetic JPEG quality
decoders = ["pil", "pil_draft", "tv"]  # pil (what pretraining runs) | pil_draft (Image.draft) | tv (torchvision.io.decode_jpeg)
pretrain_recipe = "base"  # the pretraining recipe whose crop size and scale are timed
procs = None  # processes, one per core; None: every core this process may use
passes = 2  # times each process decodes every image per repeat
repeats = 3  # interleaved repeats; the median and min-max are reported
seed = 0
out = None  # a Markdown file to write the section into (e.g. benchmarks/RESULTS.md); None: print only
