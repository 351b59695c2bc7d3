"""The ViTDet backbone (Li et al., ECCV 2022): a plain ViT with window attention in most blocks,
global attention in a few, decomposed relative position bias, and the simple feature pyramid.

Parameter names equal detectron2's `backbone.net.*` (which are timm's ViT names), so the
encoder of any MAE / timm checkpoint loads into `ViT` directly and exports to detectron2 as is.

The block variants of other encoders (README, Protocols) are options that leave the plain ViT's modules, names and
initialisation as they were: layer scale (timm's `ls1` / `ls2`, kept in every block as EVA's ViTDet keeps BEiT's
gamma_1 / gamma_2), BEiT's q / v biases with no k bias (EVA's `beit_like_qkv_bias`), BEiT's relative position table
per block (sized to the block's attention grid), SwiGLU MLPs, no qkv bias, another LayerNorm eps, no absolute position
embedding (detectron2's `use_abs_pos`), and a position embedding without a class slot (`pretrain_use_cls_token`).
"""
from collections import OrderedDict
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, LayerScale, Mlp, PatchEmbed, SwiGLUPacked
from timm.models.beit import gen_relative_position_index
# SAM's ViT is ViTDet's: the same window partition and decomposed relative position (MViTv2)
from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias, window_partition, window_unpartition
from torchvision.ops.misc import Conv2dNormActivation

from mae_core.pos_embed import resize_pos_embed


def global_block_indexes(depth: int, n: int = 4) -> list[int]:
    """`n` evenly spaced blocks ending with the last one: (2, 5, 8, 11) for depth 12, (5, 11, 17, 23) for 24."""
    return [(i + 1) * depth // n - 1 for i in range(n)]


class Attention(nn.Module):
    """Multi-head self-attention over a [B, H, W, C] map, with optional decomposed relative position; BEiT's
    variants: `qv_bias` (learned q and v biases, k bias zero) and `rel_pos_table` (a table of the (2H-1)(2W-1)
    patch offsets of the attention grid, per head, added to the logits as BEiT's Attention adds its own)."""

    def __init__(self, dim: int, num_heads: int, use_rel_pos: bool = False, input_size: tuple[int, int] | None = None,
                 qkv_bias: bool = True, qv_bias: bool = False, rel_pos_table: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias and not qv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:  # zero-initialised, as in ViTDet
            head_dim = dim // num_heads
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))
        self.q_bias = self.v_bias = None
        if qv_bias:  # BEiT's (and EVA's ViTDet beit_like_qkv_bias): learned q and v biases, the k bias fixed at 0
            self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.relative_position_bias_table = None
        if rel_pos_table:  # BEiT's table for this grid, without its 3 class-token rows (no class token here)
            h, w = input_size
            self.table_grid = (h, w)
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), num_heads))
            index = gen_relative_position_index((h, w))[1:, 1:]  # BEiT's index, patch rows and columns
            self.register_buffer("relative_position_index", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        if self.q_bias is None:
            qkv = self.qkv(x)
        else:
            qkv = F.linear(x, self.qkv.weight, torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias)))
        qkv = qkv.reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, heads, N, head_dim]
        bias = None
        if self.use_rel_pos:
            bias = get_decomposed_rel_pos_bias(q.reshape(b * self.num_heads, h * w, -1), self.rel_pos_h,
                                               self.rel_pos_w, (h, w), (h, w))
            bias = bias.view(b, self.num_heads, h * w, h * w).to(q.dtype)
        if self.relative_position_bias_table is not None:
            if (h, w) != self.table_grid:
                raise ValueError(f"BEiT's relative position table was sized for a {self.table_grid} grid, "
                                 f"attention runs on {(h, w)}")
            table = self.relative_position_bias_table[self.relative_position_index]  # [N, N, heads]
            table = table.permute(2, 0, 1).unsqueeze(0).to(q.dtype)
            bias = table if bias is None else bias + table
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(b, h, w, -1))


class Block(nn.Module):
    """A pre-norm transformer block; `window_size` > 0 restricts attention to non-overlapping windows. Variants:
    layer scale (`ls1` / `ls2`, timm's LayerScale), SwiGLU MLP (timm's SwiGLUPacked, as timm's DINOv2 models),
    LayerNorm `norm_eps`, and the Attention options."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 window_size: int = 0, use_rel_pos: bool = False, input_size: tuple[int, int] | None = None, *,
                 qkv_bias: bool = True, qv_bias: bool = False, rel_pos_table: bool = False, layer_scale: bool = False,
                 swiglu: bool = False, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, use_rel_pos,
                              (window_size, window_size) if window_size > 0 else input_size,
                              qkv_bias=qkv_bias, qv_bias=qv_bias, rel_pos_table=rel_pos_table)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        if swiglu:
            self.mlp = SwiGLUPacked(dim, int(dim * mlp_ratio), act_layer=nn.SiLU)
        else:
            self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.window_size = window_size
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()  # the pretrained gammas are loaded
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            hw = x.shape[1:3]
            x, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, hw, padded)
        else:
            x = self.attn(x)
        x = shortcut + self.drop_path(self.ls1(x))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class ViT(nn.Module):
    """The plain ViT of ViTDet: patch embedding, absolute position embedding kept at its
    pretraining size (with the cls slot unless `pretrain_use_cls_token` is False, as detectron2's) and resized
    to the input grid every forward, then blocks. Returns the stride-`patch_size` map [B, C, H/p, W/p].
    `variants`: the Block options of a non-MAE encoder (qkv_bias, qv_bias, rel_pos_table, layer_scale, swiglu,
    norm_eps)."""

    def __init__(self, *, img_size: int = 1024, pretrain_img_size: int = 224, patch_size: int = 16,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.0, window_size: int = 14, window_block_indexes=None,
                 use_rel_pos: bool = True, use_abs_pos: bool = True, pretrain_use_cls_token: bool = True,
                 variants: dict | None = None):
        super().__init__()
        self.patch_size, self.embed_dim = patch_size, embed_dim
        self.patch_embed = PatchEmbed(img_size=None, patch_size=patch_size, in_chans=3, embed_dim=embed_dim,
                                      output_fmt="NHWC", strict_img_size=False)
        self.pretrain_use_cls_token = pretrain_use_cls_token
        self.pos_embed = None
        if use_abs_pos:
            slots = int(pretrain_use_cls_token)
            self.pos_embed = nn.Parameter(torch.zeros(1, (pretrain_img_size // patch_size) ** 2 + slots, embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if window_block_indexes is None:
            window_block_indexes = [i for i in range(depth) if i not in global_block_indexes(depth)]
        grid = (img_size // patch_size, img_size // patch_size)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth decay rule
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, rates[i], window_size if i in window_block_indexes else 0,
                  use_rel_pos, grid, **(variants or {})) for i in range(depth))
        self.window_block_indexes = list(window_block_indexes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        h, w = x.shape[1:3]
        if self.pos_embed is not None:
            slots = int(self.pretrain_use_cls_token)
            x = x + resize_pos_embed(self.pos_embed, (h, w), slots)[:, slots:].reshape(1, h, w, -1)
        for blk in self.blocks:
            x = blk(x)
        return x.permute(0, 3, 1, 2)


def _stage(scale: float, dim: int, out_channels: int) -> nn.Sequential:
    """One level of the simple feature pyramid: rescale the stride-16 map, then 1x1 and 3x3 convs with LN."""
    if scale == 4.0:
        layers = [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
                  nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)]
        width = dim // 4
    elif scale == 2.0:
        layers, width = [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)], dim // 2
    elif scale == 1.0:
        layers, width = [], dim
    elif scale == 0.5:
        layers, width = [nn.MaxPool2d(2, stride=2)], dim
    else:
        raise ValueError(f"unsupported pyramid scale {scale}")
    conv = partial(Conv2dNormActivation, norm_layer=LayerNorm2d, activation_layer=None, bias=False)
    return nn.Sequential(*layers, conv(width, out_channels, kernel_size=1), conv(out_channels, out_channels, kernel_size=3))


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's backbone for torchvision's detectors: `net` (a ViT) and, from its single map,
    levels p2-p5 (strides 4, 8, 16, 32 for patch 16) plus a max-pooled p6, `out_channels` each."""

    def __init__(self, net: ViT, out_channels: int = 256, scales=(4.0, 2.0, 1.0, 0.5)):
        super().__init__()
        self.net = net
        self.out_channels = out_channels
        self.scales = tuple(scales)
        self.stages = nn.ModuleList(_stage(s, net.embed_dim, out_channels) for s in scales)
        self.names = [f"p{int(torch.log2(torch.tensor(net.patch_size / s)).item())}" for s in scales]
        self.strides = {n: int(net.patch_size / s) for n, s in zip(self.names, scales)}
        last = int(self.names[-1][1:])
        self.strides[f"p{last + 1}"] = 2 * self.strides[self.names[-1]]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feat = self.net(x)
        out = OrderedDict((name, stage(feat)) for name, stage in zip(self.names, self.stages))
        last = next(reversed(out.values()))
        out[f"p{int(self.names[-1][1:]) + 1}"] = F.max_pool2d(last, kernel_size=1, stride=2)  # detectron2's LastLevelMaxPool
        return out
