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
