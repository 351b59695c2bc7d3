"""The ViT as a multi-level backbone: token maps after four blocks, turned into strides 4, 8, 16, 32.

The encoder is the timm ViT (or timm Beit) that `transfer.encoder.init_encoder` builds from any checkpoint.
Options of the paper's ADE20K set-up (mmsegmentation's MAE backbone): a relative position bias in every block
(zero-initialised, so a pretrained encoder starts unchanged) and layer scale (init 1.0, also the identity).

Every variant the checkpoint formats load enters as the references take theirs: mmseg's BEiT backbone
(mmseg/models/backbones/beit.py) and BEiT's segmentation code (unilm beit/semantic_segmentation/backbone/beit.py)
pass the class token through every block and feed the neck `x[:, 1:]`; DINOv2's `get_intermediate_layers`
(dinov2/models/vision_transformer.py) does so with the class and register tokens. So here every extra token (class,
registers, DeiT's distillation token) passes through the blocks and leaves the maps. The encoder's own layer scale
(ls1 / ls2, BEiT's gamma_1 / gamma_2), q / v biases and relative position tables are kept (the recipe's options add
only what an encoder lacks); BEiT's tables arrive resized to the crop's grid by the loader, as BEiT's and mmseg's
checkpoint loading does (mae_core.pos_embed.resize_rel_pos_table).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerScale, resample_abs_pos_embed
from timm.models.beit import Beit, gen_relative_position_index

from mae_core.archs import VitArch
from mae_core.errors import MaeBenchError

OUT_INDICES = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23), 32: (7, 15, 23, 31)}  # ViT-B/L (paper), ViT-H (evenly spread)


class RelPosAttention(nn.Module):
    """timm's Attention (same qkv / proj weights) plus BEiT's relative position bias table with three
    extra entries for cls->token, token->cls and cls->cls. For a token grid other than the table's, the
    table is resampled bilinearly. On timm's Beit attention it keeps BEiT's q / v biases (no k bias) and the
    block's own table, when it has one. With `prefix` tokens other than one class token (registers, a
    distillation token, none), each extra token takes the class token's three entries: like it, a token without
    a position (our rule; BEiT's and mmseg's backbones have the class token only)."""

    def __init__(self, attn: nn.Module, window: tuple[int, int], prefix: int = 1):
        super().__init__()
        self.num_heads, self.scale = attn.num_heads, attn.scale
        self.qkv, self.proj, self.attn_drop, self.proj_drop = attn.qkv, attn.proj, attn.attn_drop, attn.proj_drop
        self.q_bias, self.v_bias = getattr(attn, "q_bias", None), getattr(attn, "v_bias", None)  # timm Beit's
        self.prefix = prefix
        table = getattr(attn, "relative_position_bias_table", None)
        if table is not None:  # BEiT's own table, at its window (the loader resized it to the crop's grid)
            window = attn.window_size
        self.window = tuple(window)
        size = (2 * window[0] - 1) * (2 * window[1] - 1) + 3
        self.relative_position_bias_table = table if table is not None else nn.Parameter(
            torch.zeros(size, self.num_heads))
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
        if self.prefix != 1:  # row / column 0 of BEiT's index is the class token's
            keep = torch.tensor([0] * self.prefix + list(range(1, grid[0] * grid[1] + 1)), device=index.device)
            index = index[keep][:, keep]
        n = grid[0] * grid[1] + self.prefix
        return table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False,
                shared_rel_pos_bias=None) -> torch.Tensor:  # the keywords of timm's Block and Beit's Block
        b, n, _ = x.shape
        if self.q_bias is not None:  # timm Beit: q and v biases, none for k
            qkv = F.linear(x, self.qkv.weight, torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias)))
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias(self.grid).unsqueeze(0).to(q.dtype),
                                           dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, -1)))


class ViTBackbone(nn.Module):
    """Token maps [B, C, H/p, W/p] after the blocks in `out_indices` (no final norm, as mmseg's MAE);
    any input size that is a multiple of the patch size (the absolute position embedding is resampled).
    `rel_pos_bias` / `layer_scale_init` add a zero-initialised table / layer scale to blocks without one."""

    def __init__(self, vit: nn.Module, out_indices=None, rel_pos_bias: bool = False,
                 layer_scale_init: float | None = None, window: tuple[int, int] | None = None):
        super().__init__()
        depth = len(vit.blocks)
        self.out_indices = tuple(out_indices) if out_indices else OUT_INDICES.get(depth, _even(depth))
        if max(self.out_indices) >= depth or len(set(self.out_indices)) != len(self.out_indices):
            # mmseg's backbones append a block's map once, however often out_indices names it
            raise MaeBenchError(f"model.out_indices {self.out_indices} must name different blocks of the ViT's {depth} "
                                f"(UperNet takes four maps; an encoder of fewer than 4 blocks cannot give them)")
        self.vit, self.patch_size = vit, vit.patch_embed.patch_size[0]
        self.embed_dim = vit.embed_dim
        self.depth = depth
        self.beit = isinstance(vit, Beit)
        self.prefix = vit.num_prefix_tokens  # class, register and distillation tokens (timm's count; Beit: 1)
        # the MAE token layout: one class token with a position slot (the path MAE checkpoints always took)
        self.mae_tokens = not self.beit and self.prefix == 1 and vit.cls_token is not None and not vit.no_embed_class
        _check_blocks(vit)
        grid = window or vit.patch_embed.grid_size
        for blk in vit.blocks:
            if rel_pos_bias or getattr(blk.attn, "relative_position_bias_table", None) is not None:
                blk.attn = RelPosAttention(blk.attn, grid, self.prefix)
            if layer_scale_init is None:
                continue
            if self.beit and blk.gamma_1 is None:  # mmseg's BEiT layer: init_values x ones
                blk.gamma_1 = nn.Parameter(layer_scale_init * torch.ones(vit.embed_dim))
                blk.gamma_2 = nn.Parameter(layer_scale_init * torch.ones(vit.embed_dim))
            elif not self.beit and isinstance(blk.ls1, nn.Identity):  # a pretrained layer scale is kept
                blk.ls1 = LayerScale(vit.embed_dim, layer_scale_init)
                blk.ls2 = LayerScale(vit.embed_dim, layer_scale_init)
        vit.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        vit = self.vit
        x = vit.patch_embed.proj(x)  # [B, C, h, w]
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        if self.mae_tokens:
            pos = vit.pos_embed
            if pos.shape[1] != h * w + 1:
                pos = resample_abs_pos_embed(pos, (h, w), num_prefix_tokens=1)
            x = torch.cat([vit.cls_token.expand(b, -1, -1) + pos[:, :1], x + pos[:, 1:]], dim=1)
            x = vit.norm_pre(vit.pos_drop(x))
        else:
            x = self._tokens(x, h, w)
        outs = []
        for i, blk in enumerate(vit.blocks):
            if isinstance(blk.attn, RelPosAttention):
                blk.attn.grid = (h, w)
            x = blk(x)
            if i in self.out_indices:  # the extra tokens leave the maps (DINOv2's get_intermediate_layers)
                outs.append(x[:, self.prefix:].transpose(1, 2).reshape(b, c, h, w))
        return outs

    def _tokens(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Prefix tokens and position embeddings as timm's VisionTransformer._pos_embed (registers and DeiT's
        distillation token after the class token; with no_embed_class the positions cover the patches only) and
        as timm's Beit.forward_features (class token; positions only with an absolute embedding)."""
        vit, b = self.vit, x.shape[0]
        prefix = [t.expand(b, -1, -1) for t in (vit.cls_token, getattr(vit, "reg_token", None)) if t is not None]
        pos = vit.pos_embed
        if pos is not None:
            slots = 0 if getattr(vit, "no_embed_class", False) else self.prefix
            if pos.shape[1] != h * w + slots:
                pos = resample_abs_pos_embed(pos, (h, w), num_prefix_tokens=slots)
            if slots == 0:
                x = x + pos
        x = torch.cat([*prefix, x], dim=1)
        if pos is not None and slots:
            x = x + pos
        x = vit.pos_drop(x)
        return x if self.beit else vit.norm_pre(x)


def trained_arch(config: dict) -> str | VitArch:
    """The encoder a trained segmenter's `config` records: its arch name, or for a variant (registers, layer
    scale, BEiT blocks, ...) the VitArch the run resolved, so `--eval-only` rebuilds that encoder."""
    spec = (config.get("init") or {}).get("arch_spec")
    arch = VitArch(**{k: v for k, v in spec.items() if k != "name"}) if spec else None
    return config["arch"] if arch is None or arch.plain else arch


def _check_blocks(vit: nn.Module) -> None:
    """One error line for a block this backbone would run differently from the encoder (no format loads one)."""
    if getattr(vit, "rel_pos_bias", None) is not None:
        raise MaeBenchError("UperNet takes per-block relative position tables; this Beit shares one "
                            "(the checkpoint formats copy a shared table into every block)")
    for blk in vit.blocks:
        attn = blk.attn
        odd = [n for n in ("q_norm", "k_norm", "norm") if not isinstance(getattr(attn, n, nn.Identity()), nn.Identity)]
        odd += [n for n in ("gate", "qkv_bias_separate") if getattr(attn, n, None)]
        if odd:
            raise MaeBenchError(f"UperNet's attention does not take an attention with {', '.join(odd)}")


def _even(depth: int) -> tuple[int, ...]:
    return tuple(math.ceil(depth * f) - 1 for f in (0.25, 0.5, 0.75, 1.0))
