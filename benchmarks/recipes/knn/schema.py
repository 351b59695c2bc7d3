"""k-NN recipes: weighted k-NN on frozen features, DINO's eval_knn.py: the encoder's cls token after the final norm
(what the linear probe reads; global_pool="avg": mean patch token after fc_norm), L2-normalised, cosine similarity,
k = 20 neighbours weighted exp(sim / T) with T = 0.07, summed class votes, top-1 / top-5. No augmentation: both
splits go through the evaluation transform (resize to img_size / crop_pct, centre crop)."""
from benchmarks.recipe_schema import Features, ImgSize, NonNegative, Positive, PositiveFloat, section


@section
class Model:
    img_size: ImgSize = 224
    global_pool: str = "token"
    num_heads: Positive | None = None  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
    features: Features = "paper"  # or "method": the checkpoint format's own k-NN rule (mae_core/feature_rules.py)


@section
class Knn:
    k: Positive = 20  # at most the training set: checked when it is known
    temperature: PositiveFloat = 0.07


@section
class Data:
    crop_pct: float | None = None
    subset: Positive | None = None
    subset_mode: str = "total"
    val_subset: Positive | None = None
    strict: bool = False
    num_workers: NonNegative = 8


@section
class Schedule:
    batch_size: Positive = 256  # feature extraction only


@section
class Runtime:
    seed: NonNegative = 0
    device: str = "auto"


@section
class Recipe:
    protocol: str = "knn"
    model: Model
    knn: Knn
    data: Data
    schedule: Schedule
    runtime: Runtime
