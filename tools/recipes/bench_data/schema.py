"""`python -m tools.data_speed` recipes: decode + augmentation img/s per core of the pretraining input pipeline."""
from benchmarks.recipe_schema import NonNegative, Path, Positive, section


@section
class Recipe:
    # a folder of JPEGs (the first `num_images`, sorted); None: synthetic photo-like JPEGs in a temp folder
    data: Path | None = None
    num_images: Positive = 64
    image_size: list[Positive] = [500, 375]  # synthetic images' width x height (an ImageNet-typical size)
    quality: int = 90  # synthetic JPEG quality
    # pil (what pretraining runs) | pil_draft (Image.draft) | tv (torchvision.io.decode_jpeg)
    decoders: list[str] = ["pil", "pil_draft", "tv"]
    pretrain_recipe: str = "base"  # the pretraining recipe whose crop size and scale are timed
    procs: Positive | None = None  # processes, one per core; None: every core this process may use
    passes: Positive = 2  # times each process decodes every image per repeat
    repeats: Positive = 3  # interleaved repeats; the median and min-max are reported
    seed: NonNegative = 0
    out: str | None = None  # a Markdown file to write the section into (e.g. benchmarks/RESULTS.md); None: print only
