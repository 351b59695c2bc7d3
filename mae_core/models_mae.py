"""Masked Autoencoder with a ViT encoder and a light ViT decoder (He et al., 2022).

Parameter names equal the official MAE repository's, and the encoder part
equals timm's `VisionTransformer`, so checkpoints move between the three.
"""
from functools import partial

import torch
import torch.nn as nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block

from .archs import ARCHS
from .masking import STRATEGIES, kept_patches, make_noise
from .pos_embed import resize_pos_embed, sincos_2d


class MaskedAutoencoderViT(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16,
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0,
                 norm_pix_loss=False, mask_strategy="random", mask_tokens_in_encoder=False):
        super().__init__()
        if mask_strategy not in STRATEGIES:
            raise ValueError(f"unknown mask strategy {mask_strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                           depth=depth, num_heads=num_heads, decoder_embed_dim=decoder_embed_dim,
                           decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads, mlp_ratio=mlp_ratio,
                           norm_pix_loss=norm_pix_loss, mask_strategy=mask_strategy,
                           mask_tokens_in_encoder=mask_tokens_in_encoder)
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.patch_size = patch_size
        self.norm_pix_loss = norm_pix_loss
        self.mask_strategy = mask_strategy
        self.mask_tokens_in_encoder = mask_tokens_in_encoder

        # encoder
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.grid = self.patch_embed.grid_size
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        if mask_tokens_in_encoder:
            self.encoder_mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                                     for _ in range(depth)])
        self.norm = norm_layer(embed_dim)

        # decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        if not mask_tokens_in_encoder:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans, bias=True)
        self.initialize_weights()

    def initialize_weights(self):
        """The official initialisation: fixed sin-cos position embeddings, xavier-uniform
        Linear layers and patch projection, normal(0.02) tokens, unit LayerNorms."""
        h, w = self.grid
        self.pos_embed.data.copy_(sincos_2d(self.pos_embed.shape[-1], h, w, cls_token=True)[None])
        self.decoder_pos_embed.data.copy_(sincos_2d(self.decoder_pos_embed.shape[-1], h, w, cls_token=True)[None])
        proj = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(proj.view(proj.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        for name in ("mask_token", "encoder_mask_token"):
            if hasattr(self, name):
                nn.init.normal_(getattr(self, name), std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    # ---- patches -------------------------------------------------------------------
    def grid_of(self, imgs: torch.Tensor) -> tuple[int, int]:
        p = self.patch_size
        if imgs.shape[2] % p or imgs.shape[3] % p:
            raise ValueError(f"image size {tuple(imgs.shape[2:])} is not a multiple of the patch size {p}")
        return imgs.shape[2] // p, imgs.shape[3] // p

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, N, p*p*C], row-major patches, (p, q, c) inside a patch."""
        p = self.patch_size
        h, w = self.grid_of(imgs)
        x = imgs.reshape(imgs.shape[0], imgs.shape[1], h, p, w, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(imgs.shape[0], h * w, -1)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """[B, N, p*p*C] -> [B, C, H, W]; the grid defaults to square."""
        p = self.patch_size
        h, w = grid or (int(round(x.shape[1] ** 0.5)),) * 2
        c = x.shape[2] // (p * p)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def _pos(self, pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return pos_embed if tuple(grid) == tuple(self.grid) else resize_pos_embed(pos_embed, grid)

    # ---- masking -------------------------------------------------------------------
    @staticmethod
    def masks_from_noise(noise: torch.Tensor, mask_ratio: float):
        """Keep the `int(N * (1 - mask_ratio))` lowest-noise patches.
        Returns ids_keep [B, K], mask [B, N] (1 = masked) and ids_restore [B, N]."""
        len_keep = kept_patches(noise.shape[1], mask_ratio)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        mask = torch.ones_like(noise)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return ids_keep, mask, ids_restore

    # ---- forward -------------------------------------------------------------------
    def forward_encoder(self, imgs: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None):
        """Encode the visible patches (or all, with mask tokens in the encoder).
        Returns latent [B, 1 + K, D] (or [B, 1 + N, D]), mask [B, N], ids_restore [B, N]."""
        grid = self.grid_of(imgs)
        pos = self._pos(self.pos_embed, grid)
        x = self.patch_embed(imgs) + pos[:, 1:, :]
        if noise is None:
            noise = make_noise(self.mask_strategy, x.shape[0], grid, mask_ratio, device=x.device)
        ids_keep, mask, ids_restore = self.masks_from_noise(noise, mask_ratio)
        if self.mask_tokens_in_encoder:
            tokens = (self.encoder_mask_token + pos[:, 1:, :]).expand_as(x)
            x = torch.where(mask.unsqueeze(-1).bool(), tokens, x)
        else:
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + pos[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Latent -> per-patch pixel predictions [B, N, p*p*C] in patchified order."""
        x = self.decoder_embed(x)
        if not self.mask_tokens_in_encoder:
            n = ids_restore.shape[1]
            mask_tokens = self.mask_token.expand(x.shape[0], n + 1 - x.shape[1], -1)
            x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
            x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self._pos(self.decoder_pos_embed, grid)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]

    def target(self, imgs: torch.Tensor) -> torch.Tensor:
        """The reconstruction target: patches, normalised per patch if norm_pix_loss."""
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over masked patches only."""
        loss = ((pred - self.target(imgs)) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor, mask_ratio: float = 0.75, noise: torch.Tensor | None = None):
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore, self.grid_of(imgs))
        return self.forward_loss(imgs, pred, mask), pred, mask


def _factory(arch: str):
    spec = ARCHS[arch]

    def build(**kwargs) -> MaskedAutoencoderViT:
        kw = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0)
        kw.update(spec)
        kw.update(kwargs)
        return MaskedAutoencoderViT(**kw)

    build.__name__ = f"mae_{arch}"
    build.__doc__ = f"MAE with a {arch} encoder (decoder 8 x 512, 16 heads unless overridden)."
    return build


MODELS = {f"mae_{arch}": _factory(arch) for arch in ARCHS}  # every known size; `create_mae` builds any of them
# The official repository's three, by name (its models_mae.py spells them mae_vit_*_dec512d8b).
mae_vit_base_patch16 = MODELS["mae_vit_base_patch16"]
mae_vit_large_patch16 = MODELS["mae_vit_large_patch16"]
mae_vit_huge_patch14 = MODELS["mae_vit_huge_patch14"]


def create_mae(name: str, **kwargs) -> MaskedAutoencoderViT:
    """Build `mae_vit_<size>_patch<p>` (the `mae_` prefix is optional)."""
    key = name if name.startswith("mae_") else f"mae_{name}"
    if key not in MODELS:
        raise KeyError(f"unknown MAE model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[key](**kwargs)
