"""Exported weights: the one writer every `mae-bench export` target uses, and the timm target."""
import os

import torch

from .atomic import atomic_write
from .weights import load_encoder


def write_weights(path, tensors: dict, meta: dict, under_model: bool = False) -> None:
    """Atomically write `tensors`: a flat .safetensors file with `meta` as its metadata (strings) when `path`
    says so, else torch.save of the tensors, or with `under_model` of {"model": tensors, **meta} (detectron2's
    checkpoint layout, which its checkpointer loads without matching heuristics)."""
    path = os.fspath(path)
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}  # safetensors: no shared storage
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file
        metadata = {"format": "pt", **{k: str(v) for k, v in meta.items()}}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    else:
        payload = {"model": tensors, "__author__": "mae-bench", **meta} if under_model else tensors
        atomic_write(path, lambda tmp: torch.save(payload, tmp))


def export_timm(path_in, path_out) -> str:
    """Write the encoder as a timm ViT state dict (.safetensors by extension, else torch); returns the arch."""
    enc, info = load_encoder(path_in)
    write_weights(path_out, enc, {"arch": info["arch"]})
    return info["arch"]
