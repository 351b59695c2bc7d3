"""`mae-bench visualize` recipes: Figure 2 style reconstruction pictures."""
from benchmarks.recipe_schema import ImgSize, MaskRatio, NonNegative, Positive, section


@section
class Recipe:
    mask_ratio: MaskRatio = 0.75
    seed: NonNegative = 0
    num_images: Positive = 6
    img_size: ImgSize | None = None  # None: the checkpoint's pretraining size
