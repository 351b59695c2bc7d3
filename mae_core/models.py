"""Public model entry points: `create_mae(name)` for every known size, and the official three by name."""
from .models_mae import (MODELS, MaskedAutoencoderViT, create_mae, mae_vit_base_patch16, mae_vit_huge_patch14,
                         mae_vit_large_patch16)

__all__ = ["MODELS", "MaskedAutoencoderViT", "create_mae", "mae_vit_base_patch16", "mae_vit_large_patch16",
           "mae_vit_huge_patch14"]
