"""The ViT sizes this project knows, named like timm's (`vit_base_patch16`)."""

# size -> (embed_dim, depth, num_heads), as in ViT / timm
VIT_SIZES = {
    "micro": (128, 6, 4),  # small-scale benchmarks on CPU (not a timm size)
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
PATCH_SIZES = (16, 14, 8)  # 8: ViT-Tiny/8 gives 64 px images an 8 x 8 token grid (small-scale benchmarks)

ARCHS = {
    f"vit_{size}_patch{p}": dict(patch_size=p, embed_dim=d, depth=n, num_heads=h)
    for size, (d, n, h) in VIT_SIZES.items() for p in PATCH_SIZES
}


def arch_spec(name: str) -> dict:
    """Encoder hyper-parameters of `vit_<size>_patch<p>` (an optional `mae_` prefix is ignored)."""
    key = name[4:] if name.startswith("mae_") else name
    if key not in ARCHS:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}")
    return dict(ARCHS[key])


def arch_name(patch_size: int, embed_dim: int, depth: int) -> str | None:
    """The name of the known ViT with these shapes, or None."""
    for name, spec in ARCHS.items():
        if (spec["patch_size"], spec["embed_dim"], spec["depth"]) == (patch_size, embed_dim, depth):
            return name
    return None
