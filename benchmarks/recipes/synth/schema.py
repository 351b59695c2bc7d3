"""Synthetic scene recipes: one generator, three layouts (ImageFolder, COCO, ADE20K)."""
from benchmarks.recipe_schema import ImgSize, NonNegative, Positive, section


@section
class Recipe:
    n_train: Positive = 600
    n_val: Positive = 150
    img_size: ImgSize = 64
    seed: NonNegative = 0
