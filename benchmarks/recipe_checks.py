"""Recipe values checked by type and range when a recipe is resolved, before anything is built or written.

Rules go by a value's own key (the last part of its dotted name), so they hold in every family and in
user-written recipes; `None` is always allowed where a recipe uses it for "derive it" or "off".
"""
from mae_core.errors import MaeBenchError

MAX_IMG_SIZE = 8192  # a larger side would allocate terabytes (and the paper's largest input is 448)


def _int(lo, hi=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return "an integer"
        if v < lo or (hi is not None and v > hi):
            return f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"
    return check


def _float(lo, hi=None, lo_open=False, hi_open=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "a number"
        if v != v or (v <= lo if lo_open else v < lo) or (hi is not None and (v >= hi if hi_open else v > hi)):
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            return f"a number in {left}{lo}, {hi if hi is not None else 'inf'}{right}"
    return check


def _one_of(*values):
    def check(v):
        if v not in values:
            return "one of " + ", ".join(values)
    return check


def _text(v):
    if not isinstance(v, str) or not v:
        return "a path (a non-empty string)"


_POSITIVE = _int(1)
_NON_NEGATIVE = _int(0)
_PROBABILITY = _float(0, 1)
RULES = {
    **dict.fromkeys(("epochs", "iters", "max_iter", "batch_size", "eval_batch_size", "accum_iter", "eval_every",
                     "eval_interval", "save_every", "log_every", "keep_last", "n_train", "n_val", "num_images",
                     "subset", "val_subset", "repeats", "window_size"), _POSITIVE),
    **dict.fromkeys(("img_size", "pretrain_img_size", "crop_size"), _int(1, MAX_IMG_SIZE)),
    **dict.fromkeys(("warmup_epochs", "warmup_iters", "num_workers", "seed"), _NON_NEGATIVE),
    **dict.fromkeys(("blr", "lr", "min_lr", "weight_decay", "mixup", "cutmix", "aux_weight"), _float(0)),
    **dict.fromkeys(("prob", "flip_prob", "switch_prob", "reprob", "drop_path", "cat_max_ratio"), _PROBABILITY),
    "smoothing": _float(0, 1, hi_open=True),
    "dropout": _float(0, 1, hi_open=True),
    "ema_decay": _float(0, 1, hi_open=True),
    "layer_decay": _float(0, 1, lo_open=True),
    "mask_ratio": _float(0, 1, lo_open=True, hi_open=True),
    "decimals": _int(0, 10),
    "num_heads": _POSITIVE,  # model.num_heads (dividing the width: checked when the checkpoint is read)
    "k": _POSITIVE,  # knn neighbours (at most the training set: checked when it is known)
    "temperature": _float(0, lo_open=True),
    "cpu_linear": _one_of("auto", "onednn", "aten"),  # mae_core.cpu_linear.CHOICES (this module is torch-free)
    # pretraining's k-NN monitor (monitor.*; knn_k at most the monitor's training images: checked when known)
    "knn_every": _NON_NEGATIVE,
    "knn_k": _POSITIVE,
    "knn_temperature": _float(0, lo_open=True),
    "knn_global_pool": _one_of("token", "avg"),  # mae_core.vit.GLOBAL_POOLS (this module is torch-free)
    "knn_train_subset": _POSITIVE,
    "knn_val_subset": _POSITIVE,
    "knn_data": _text,
}


def _leaves(node, prefix=""):
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not key.endswith("sets"):  # suite step overrides are checked by their step
            yield from _leaves(value, name + ".")
        else:
            yield name, value


def check_types(defaults: dict, overrides: dict) -> None:
    """An override keeps its default's type (an int where a float is expected is fine; `None` defaults take any)."""
    for key, value in overrides.items():
        node = defaults
        for part in key.split("."):
            node = node[part]
        if node is None or value is None:
            continue
        want = (int, float) if isinstance(node, float) else (list, tuple) if isinstance(node, (list, tuple)) else type(node)
        if not isinstance(value, want) or (isinstance(value, bool) and not isinstance(node, bool)):
            raise MaeBenchError(f"--set {key}={value!r}: expected {type(node).__name__} like the recipe's {node!r}")


def check_ranges(plain: dict) -> None:
    """Every value whose key has a rule is in range; the message names the key and what it must be."""
    for name, value in _leaves(plain):
        rule = RULES.get(name.rsplit(".", 1)[-1])
        if rule is None or value is None:
            continue
        problem = rule(value)
        if problem:
            raise MaeBenchError(f"recipe value {name}={value!r} is invalid: it must be {problem}")
