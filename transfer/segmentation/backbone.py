"""The ViT as a multi-level backbone: token maps after four blocks, turned into strides 4, 8, 16, 32.

The encoder is the timm ViT that `transfer.encoder.init_encoder` builds from any checkpoint. Options of
the paper's ADE20K set-up (mmsegmentation's MAE backbone): a relative position bias in every block
(zero-initialised, so a pretrained encoder starts unchanged) and layer scale (init 1.0, also the identity).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerScale, resample_abs_pos_embed
from timm.models.beit import gen_relative_position_index

OUT_INDICES = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23), 32: (7, 15, 23, 31)}  # ViT-B/L (paper), ViT-H (evenly spread)


class RelPosAttention(nn.Module):
    """timm's Attention (same qkv / proj weights) plus BEiT's relative position bias table with three
    extra entries for cls->token, token->cls and cls->cls. For a token grid other than the table's, the
    table is resampled bilinearly."""

    def __init__(self, attn: nn.Module, window: tuple[int, int]):
        super().__init__()
        self.num_heads, self.scale = attn.num_heads, attn.scale
        self.qkv, self.proj, self.attn_drop, self.proj_drop = attn.qkv, attn.proj, attn.attn_drop, attn.proj_drop
        self.window = tuple(window)
        size = (2 * window[0] - 1) * (2 * window[1] - 1) + 3
        self.relative_position_bias_table = nn.Parameter(torch.zeros(size, self.num_heads))
        self.register_buffer("relative_position_index", gen_relative_position_index(self.window), persistent=False)
        self.grid = self.window  # set by the backbone before each forward

    def bias(self, grid: tuple[int, int]) -> torch.Tensor:
        """[heads, 1 + h*w, 1 + h*w] additive attention bias for a token grid."""
        table, index = self.relative_position_bias_table, self.relative_position_index
        if tuple(grid) != self.window:
            wh, ww = self.window
            rel = table[:-3].T.reshape(1, self.num_heads, 2 * wh - 1, 2 * ww - 1)
            rel = F.interpolate(rel, size=(2 * grid[0] - 1, 2 * grid[1] - 1), mode="bilinear", align_corners=False)
            table = torch.cat([rel.reshape(self.num_heads, -1).T, table[-3:]])
            index = gen_relative_position_index(tuple(grid)).to(table.device)
        n = grid[0] * grid[1] + 1
        return table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias(self.grid).unsqueeze(0).to(q.dtype),
                                           dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class ViTBackbone(nn.Module):
    """Token maps [B, C, H/p, W/p] after the blocks in `out_indices` (no final norm, as mmseg's MAE);
    any input size that is a multiple of the patch size (the absolute position embedding is resampled)."""

    def __init__(self, vit: nn.Module, out_indices=None, rel_pos_bias: bool = False,
                 layer_scale_init: float | None = None, window: tuple[int, int] | None = None):
        super().__init__()
        depth = len(vit.blocks)
        self.out_indices = tuple(out_indices) if out_indices else OUT_INDICES.get(depth, _even(depth))
        if max(self.out_indices) >= depth:
            raise ValueError(f"out_indices {self.out_indices} do not fit a ViT with {depth} blocks")
        self.vit, self.patch_size = vit, vit.patch_embed.patch_size[0]
        self.embed_dim = vit.embed_dim
        self.depth = depth
        grid = window or vit.patch_embed.grid_size
        for blk in vit.blocks:
            if rel_pos_bias:
                blk.attn = RelPosAttention(blk.attn, grid)
            if layer_scale_init is not None:
                blk.ls1, blk.ls2 = LayerScale(vit.embed_dim, layer_scale_init), LayerScale(vit.embed_dim, layer_scale_init)
        vit.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        vit = self.vit
        x = vit.patch_embed.proj(x)  # [B, C, h, w]
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        pos = vit.pos_embed
        if pos.shape[1] != h * w + 1:
            pos = resample_abs_pos_embed(pos, (h, w), num_prefix_tokens=1)
        x = torch.cat([vit.cls_token.expand(b, -1, -1) + pos[:, :1], x + pos[:, 1:]], dim=1)
        x = vit.norm_pre(vit.pos_drop(x))
        outs = []
        for i, blk in enumerate(vit.blocks):
            if isinstance(blk.attn, RelPosAttention):
                blk.attn.grid = (h, w)
            x = blk(x)
            if i in self.out_indices:
                outs.append(x[:, 1:].transpose(1, 2).reshape(b, c, h, w))
        return outs


def _even(depth: int) -> tuple[int, ...]:
    return tuple(math.ceil(depth * f) - 1 for f in (0.25, 0.5, 0.75, 1.0))
