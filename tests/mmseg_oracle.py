"""mmsegmentation 1.2.2 as a test oracle, on the pure-Python `mmcv-lite` (`pip install -e '.[interop]'`).

mmcv-lite has no compiled `mmcv._ext`, so `import mmcv.ops` fails, and importing mmseg imports a few
`mmcv.ops` names at module level (for heads and losses the ADE20K MAE set-up does not use). Those names
get stand-ins that raise if called; the MAE backbone, Feature2Pyramid, UPerHead, FCNHead,
CrossEntropyLoss and IoUMetric never call them, so a parity test that passes never touched one.
"""
import importlib.util
import sys
import types
import warnings
from pathlib import Path

# every mmcv.ops name that `import mmseg.models` / `mmseg.evaluation` imports, and where:
# point_sample (san_head, utils/point_sample, utils/mask_classification), sigmoid_focal_loss (focal_loss),
# CrissCrossAttention (cc_head), PSAMask (psa_head)
STAND_INS = ("point_sample", "sigmoid_focal_loss", "CrissCrossAttention", "PSAMask")
MAE_CONFIG = "mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py"


def _stand_in(name: str):
    def not_on_our_path(*args, **kwargs):
        raise NotImplementedError(f"mmcv.ops.{name} is a stand-in (needs compiled mmcv); the parity path never calls it")
    not_on_our_path.__name__ = name
    return not_on_our_path


def import_mmseg():
    """The `mmseg` package with its modules registered, or None when mmseg or mmcv is not installed."""
    if importlib.util.find_spec("mmseg") is None or importlib.util.find_spec("mmcv") is None:
        return None
    if importlib.util.find_spec("mmcv._ext") is None and "mmcv.ops" not in sys.modules:  # mmcv-lite
        ops = types.ModuleType("mmcv.ops")
        for name in STAND_INS:
            setattr(ops, name, _stand_in(name))
        sys.modules["mmcv.ops"] = ops
    with warnings.catch_warnings():  # mmcv-lite warns that its deformable attention is missing
        warnings.simplefilter("ignore")
        import mmseg
        from mmseg.utils import register_all_modules
        register_all_modules(init_default_scope=True)
    return mmseg


def mae_config():
    """mmseg's own MAE ADE20K config (shipped in the wheel under mmseg/.mim/configs)."""
    import mmseg
    from mmengine.config import Config
    return Config.fromfile(str(Path(mmseg.__file__).parent / ".mim" / "configs" / MAE_CONFIG))
