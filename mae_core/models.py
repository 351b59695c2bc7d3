"""Public model entry points: `mae_core.models.mae_vit_base_patch16(...)` and friends."""
from .models_mae import MODELS, MaskedAutoencoderViT, create_mae

globals().update(MODELS)
__all__ = ["MaskedAutoencoderViT", "create_mae", *MODELS]
