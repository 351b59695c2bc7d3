"""The ViT sizes this project knows, named like timm's (`vit_base_patch16`), and any other ViT (`VitArch`)."""
import re
from dataclasses import asdict, dataclass

from .errors import MaeBenchError

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


def arch_key(name: str) -> str:
    """`name` without the `mae_` prefix of the official MAE's model names and timm's `_224` suffix."""
    return re.sub(r"^mae_|_224$", "", name)


def arch_spec(name: str) -> dict:
    """Encoder hyper-parameters of `vit_<size>_patch<p>` or `vit_w<D>_d<N>_h<H>_patch<P>` (`arch_key` first); an
    unknown name is one line."""
    spec = parse_arch(name)
    if spec is None:
        raise MaeBenchError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))} or "
                            "vit_w<width>_d<depth>_h<heads>_patch<p>")
    return spec


def arch_name(patch_size: int, embed_dim: int, depth: int) -> str | None:
    """The name of the known ViT with these shapes, or None."""
    for name, spec in ARCHS.items():
        if (spec["patch_size"], spec["embed_dim"], spec["depth"]) == (patch_size, embed_dim, depth):
            return name
    return None


# ---- any size: a ViT as its tensors describe it ------------------------------------------------------------------
_CUSTOM = re.compile(r"^vit_w(\d+)_d(\d+)_h(\d+)_patch(\d+)$")


@dataclass(frozen=True)
class VitArch:
    """Everything that builds a timm ViT encoder: size, and the token layout and block variants of its release.

    `reg_tokens` holds timm's register tokens (DINOv2 registers) and `dist_token` DeiT's distillation token; both
    ride in timm's `reg_token` slot after the class token. `no_embed_class`: the position embedding covers the
    patches only (timm's DINOv2-with-registers layout). `pos_offset` / `pos_antialias`: how the release's own code resamples position embeddings for another image size
    (DINO / DINOv2: scale factor (grid + 0.1) / old grid; HF Dinov2WithRegisters: antialias)."""
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    in_chans: int = 3
    qkv_bias: bool = True
    class_token: bool = True
    reg_tokens: int = 0
    dist_token: bool = False
    no_embed_class: bool = False
    layer_scale: bool = False
    swiglu: bool = False
    norm_eps: float = 1e-6
    pos_offset: float = 0.0
    pos_antialias: bool = False  # HF Dinov2WithRegisters resamples with antialias
    beit: bool = False
    rel_pos_bias: bool = False
    abs_pos: bool = True

    @property
    def name(self) -> str:
        """The table's name (`vit_base_patch16`) for a table size, else `vit_w<width>_d<depth>_h<heads>_patch<p>`."""
        for name, spec in ARCHS.items():
            if (spec["patch_size"], spec["embed_dim"], spec["depth"], spec["num_heads"]) == \
                    (self.patch_size, self.embed_dim, self.depth, self.num_heads) and self.mlp_ratio == 4.0:
                return name
        return f"vit_w{self.embed_dim}_d{self.depth}_h{self.num_heads}_patch{self.patch_size}"

    @property
    def prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens + int(self.dist_token)

    @property
    def plain(self) -> bool:
        """An MAE-paper ViT: class token with a position slot, no extra tokens, no layer scale, qkv bias, GELU MLP
        of ratio 4, LayerNorm eps 1e-6."""
        return not self.variants()

    def variants(self) -> list[str]:
        """What makes it other than an MAE-paper ViT, in words (empty for a plain one)."""
        found = [("layer scale", self.layer_scale), (f"{self.reg_tokens} register tokens", self.reg_tokens),
                 ("a distillation token", self.dist_token), ("no class token", not self.class_token),
                 ("no position slot for the prefix tokens", self.no_embed_class), ("a SwiGLU MLP", self.swiglu),
                 ("no qkv bias", not self.qkv_bias), (f"MLP ratio {self.mlp_ratio:g}", self.mlp_ratio != 4.0),
                 (f"LayerNorm eps {self.norm_eps:g}", self.norm_eps != 1e-6),
                 ("BEiT blocks (q and v biases, no k bias)", self.beit),
                 ("a relative position bias table per block", self.rel_pos_bias),
                 ("no absolute position embedding", not self.abs_pos)]
        return [text for text, present in found if present]

    def as_dict(self) -> dict:
        return {"name": self.name, **asdict(self)}


def parse_arch(name: str) -> dict | None:
    """patch_size / embed_dim / depth / num_heads of a table name or a `vit_w<D>_d<N>_h<H>_patch<P>` name, or None."""
    key = arch_key(name)
    if key in ARCHS:
        return dict(ARCHS[key])
    m = _CUSTOM.match(key)
    if m:
        d, n, h, p = map(int, m.groups())
        return dict(patch_size=p, embed_dim=d, depth=n, num_heads=h)
    return None
