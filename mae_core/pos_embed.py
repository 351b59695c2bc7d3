"""Fixed 2-D sine-cosine position embeddings and their resizing."""
import torch
from timm.layers import resample_abs_pos_embed


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[M] positions -> [M, dim] embedding: sin in the first half, cos in the second."""
    assert dim % 2 == 0
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int, cls_token: bool = False) -> torch.Tensor:
    """[(1 +) grid_h * grid_w, dim] embedding, row-major; the first half of the
    channels encodes the column coordinate, the second half the row (official MAE)."""
    assert dim % 4 == 0
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int], num_prefix_tokens: int = 1,
                     offset: float = 0.0, antialias: bool = False) -> torch.Tensor:
    """Bicubic resampling of a [1, prefix + H*W, D] embedding to another (square or not) grid; the prefix
    tokens' entries are kept. offset > 0: DINOv2's interpolate_pos_encoding (scale factor (new + offset) / old,
    no antialias), so a DINOv2 encoder sees the position embeddings its own code computes; antialias: as HF's
    Dinov2WithRegisters."""
    n = pos_embed.shape[1] - num_prefix_tokens
    old = int(round(n**0.5))
    if old * old != n:
        raise ValueError(f"position embedding with {n} patch positions is not a square grid")
    if (old, old) == tuple(new_grid):  # the grid's shape, not its size: 7 x 28 has 196 positions like 14 x 14
        return pos_embed
    if offset:
        prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
        dim = grid.shape[-1]
        scale = tuple(float(g + offset) / old for g in new_grid)
        grid = torch.nn.functional.interpolate(grid.float().reshape(1, old, old, dim).permute(0, 3, 1, 2),
                                               scale_factor=scale, mode="bicubic", antialias=False)
        if tuple(grid.shape[-2:]) != tuple(new_grid):
            raise ValueError(f"offset {offset} resizes a {old} x {old} grid to {list(grid.shape[-2:])}, not {new_grid}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
        return torch.cat([prefix, grid], dim=1)
    return resample_abs_pos_embed(pos_embed, list(new_grid), old_size=[old, old],
                                  num_prefix_tokens=num_prefix_tokens, interpolation="bicubic", antialias=antialias)


# ---- BEiT's relative position bias tables ---------------------------------------------------------------------------
REL_POS_EXTRA = 3  # BEiT's cls -> token, token -> cls and cls -> cls entries, after the (2H-1)(2W-1) offsets


def rel_pos_grid(table: torch.Tensor) -> int | None:
    """The square patch grid side H of a BEiT table [(2H-1)^2 + 3, heads], or None when it is no such table."""
    n = table.shape[0] - REL_POS_EXTRA
    side = int(round(max(n, 0) ** 0.5))
    return (side + 1) // 2 if n > 0 and side * side == n and side % 2 else None


def resize_rel_pos_table(table: torch.Tensor, new_grid: tuple[int, int]) -> torch.Tensor:
    """A BEiT relative position table [(2H-1)^2 + 3, heads] for another square patch grid, as BEiT's own
    fine-tuning does (unilm beit/run_class_finetuning.py, also beit2/ and semantic_segmentation/'s checkpoint
    loading): the offsets -(H-1)..H-1 are placed at geometric-progression positions whose last one reaches the new
    half-width, each head's table is interpolated by a cubic spline through them and read at the integer offsets of
    the new grid; the three class-token entries are kept. BEiT calls scipy's `interp2d(x, y, z, kind='cubic')`,
    which SciPy 1.14 removed; on a rectangular grid it is FITPACK's interpolating spline (s=0) that
    `RectBivariateSpline(x, y, z.T, kx=3, ky=3, s=0)` builds, read back transposed (SciPy's interp2d transition
    guide), which is used here. (timm's resize_rel_pos_bias_table interpolates linearly unless
    TIMM_USE_SCIPY_INTERP is set, and then calls interp2d.)"""
    import numpy as np
    from scipy.interpolate import RectBivariateSpline
    h, w = new_grid
    if h != w:
        raise ValueError(f"BEiT's relative position tables resize to square grids only, not {h} x {w}")
    src_side = rel_pos_grid(table)
    if src_side is None:
        raise ValueError(f"a relative position table of {table.shape[0]} rows is not (2H-1)^2 + 3 for a square grid")
    if src_side == h:
        return table
    src, dst = 2 * src_side - 1, 2 * h - 1
    if src < 4:  # a cubic spline needs 4 offsets per axis (BEiT's interp2d fails there too)
        raise ValueError(f"a table of a {src_side} x {src_side} grid has too few offsets for BEiT's cubic resize")
    offsets, extra = table[:-REL_POS_EXTRA], table[-REL_POS_EXTRA:]

    def progression(a, r, n):
        return a * (1.0 - r ** n) / (1.0 - r)

    left, right = 1.01, 1.5  # BEiT's bisection for the ratio q
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if progression(1, q, src // 2) > dst // 2:
            right = q
        else:
            left = q
    dis, cur = [], 1
    for i in range(src // 2):
        dis.append(cur)
        cur += q ** (i + 1)
    x = [-d for d in reversed(dis)] + [0] + dis
    t = dst // 2.0
    dx = np.arange(-t, t + 0.1, 1.0)
    heads = []
    for i in range(table.shape[1]):
        z = offsets[:, i].reshape(src, src).float().numpy()
        spline = RectBivariateSpline(x, x, z.T, kx=3, ky=3, s=0)
        heads.append(torch.tensor(spline(dx, dx).T, dtype=torch.float32).reshape(-1, 1))
    return torch.cat([torch.cat(heads, dim=1).to(table.dtype), extra], dim=0)
