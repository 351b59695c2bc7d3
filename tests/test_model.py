import numpy as np
import pytest
import timm
import torch

from mae_core.masking import make_noise
from mae_core.models import MODELS, create_mae
from mae_core.pos_embed import resize_pos_embed, sincos_2d
from tests.conftest import tiny_mae


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
@pytest.mark.parametrize("strategy", ["random", "block", "grid"])
def test_kept_count_and_restore(ratio, strategy):
    m = tiny_mae(img_size=64, mask_strategy=strategy)  # 4 x 4 patches
    n = 16
    noise = make_noise(strategy, 5, (4, 4), ratio)
    ids_keep, mask, ids_restore = m.masks_from_noise(noise, ratio)
    keep = int(n * (1 - ratio))
    assert mask.shape == (5, n) and ids_keep.shape == (5, keep)
    assert torch.all(mask.sum(1) == n - keep)
    shuffle = torch.argsort(noise, dim=1)
    x = torch.randn(5, n, 3)
    shuffled = torch.gather(x, 1, shuffle[..., None].expand(-1, -1, 3))
    assert torch.equal(torch.gather(shuffled, 1, ids_restore[..., None].expand(-1, -1, 3)), x)
    # the kept patches are exactly the lowest-noise ones, and they are the unmasked ones
    assert torch.equal(ids_keep, shuffle[:, :keep])
    assert torch.all(torch.gather(mask, 1, ids_keep) == 0)


def test_forward_shapes_and_noise_semantics():
    m = tiny_mae(img_size=64)
    x = torch.randn(2, 3, 64, 64)
    noise = torch.arange(16, dtype=torch.float32).flip(0).expand(2, 16)  # keep the last 4 patches
    loss, pred, mask = m(x, mask_ratio=0.75, noise=noise)
    assert loss.ndim == 0 and pred.shape == (2, 16, 16 * 16 * 3) and mask.shape == (2, 16)
    assert torch.equal(mask[0], torch.tensor([1.0] * 12 + [0.0] * 4))


def test_loss_only_on_masked_patches():
    m = tiny_mae(img_size=64)
    x = torch.randn(2, 3, 64, 64)
    _, pred, mask = m(x)
    base = m.forward_loss(x, pred, mask)
    visible = pred.clone()
    visible[mask == 0] += 5.0
    assert torch.allclose(m.forward_loss(x, visible, mask), base)
    masked = pred.clone()
    masked[mask == 1] += 5.0
    assert not torch.allclose(m.forward_loss(x, masked, mask), base)


def test_norm_pix_loss_matches_direct_computation():
    m = tiny_mae(img_size=32, norm_pix_loss=True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    pred = torch.randn(2, 4, 768, dtype=torch.float64)
    mask = torch.tensor([[1.0, 0, 1, 1], [0, 1, 1, 0]], dtype=torch.float64)
    xs, ps, ms = x.numpy(), pred.numpy(), mask.numpy()
    total, count = 0.0, 0
    for b in range(2):
        for i in range(2):
            for j in range(2):
                k = i * 2 + j
                patch = xs[b, :, i * 16:(i + 1) * 16, j * 16:(j + 1) * 16].transpose(1, 2, 0).reshape(-1)
                t = (patch - patch.mean()) / np.sqrt(patch.var(ddof=1) + 1e-6)
                if ms[b, k]:
                    total += np.mean((ps[b, k] - t) ** 2)
                    count += 1
    assert m.forward_loss(x, pred, mask).item() == pytest.approx(total / count, rel=1e-10)


def test_patchify_order_and_inverse():
    m = tiny_mae(img_size=32)
    x = torch.randn(2, 3, 32, 48)
    p = m.patchify(x)
    assert p.shape == (2, 6, 768)
    # patch (i, j) holds pixel (r, c, channel) at index (r * 16 + c) * 3 + channel
    assert p[1, 1 * 3 + 2, (5 * 16 + 7) * 3 + 2] == x[1, 2, 16 + 5, 32 + 7]
    assert torch.equal(m.unpatchify(p, (2, 3)), x)


def test_encoder_on_visible_tokens_equals_blocks_on_gathered_sequence():
    m = tiny_mae(img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    noise = torch.rand(2, 16)
    latent, mask, _ = m.forward_encoder(x, 0.75, noise)
    ids_keep = torch.argsort(noise, 1)[:, :4]
    full = m.patch_embed(x) + m.pos_embed[:, 1:]
    seq = torch.cat([(m.cls_token + m.pos_embed[:, :1]).expand(2, -1, -1),
                     torch.gather(full, 1, ids_keep[..., None].expand(-1, -1, full.shape[-1]))], 1)
    for blk in m.blocks:
        seq = blk(seq)
    assert torch.allclose(latent, m.norm(seq), atol=1e-6)


def test_no_masking_matches_timm_vit_and_mask_token_encoder():
    m = tiny_mae(img_size=32).eval()
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32).eval()
    enc = {k: v for k, v in m.state_dict().items() if not k.startswith("decoder") and k != "mask_token"}
    vit.load_state_dict(enc, strict=True)
    x = torch.randn(2, 3, 32, 32)
    order = torch.arange(4, dtype=torch.float32).expand(2, 4)
    latent, _, _ = m.forward_encoder(x, 0.0, order)
    assert torch.allclose(latent, vit.forward_features(x), atol=1e-5)
    # with mask tokens in the encoder and nothing masked, the encoder is the same function
    mt = tiny_mae(img_size=32, mask_tokens_in_encoder=True).eval()
    missing, unexpected = mt.load_state_dict(m.state_dict(), strict=False)
    assert set(missing) == {"encoder_mask_token"} and set(unexpected) == {"mask_token"}
    assert torch.allclose(mt.forward_encoder(x, 0.0, order)[0], latent, atol=1e-6)
    # with masking, it sees all N tokens, mask tokens at the masked places
    latent_m, mask, _ = mt.forward_encoder(x, 0.75, torch.rand(2, 4))
    assert latent_m.shape == (2, 5, 192) and mask.sum() == 6
    loss, pred, _ = mt(x)
    assert pred.shape == (2, 4, 768) and torch.isfinite(loss)


def test_official_parameter_names_and_init():
    m = create_mae("vit_base_patch16", decoder_depth=1)
    sd = m.state_dict()
    for key in ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed",
                "blocks.11.attn.qkv.weight", "blocks.11.attn.qkv.bias", "blocks.0.mlp.fc2.bias", "norm.weight",
                "decoder_embed.weight", "mask_token", "decoder_pos_embed", "decoder_blocks.0.norm1.weight",
                "decoder_norm.bias", "decoder_pred.weight"]:
        assert key in sd, key
    assert sd["pos_embed"].shape == (1, 197, 768) and sd["decoder_pos_embed"].shape == (1, 197, 512)
    assert sd["decoder_pred.weight"].shape == (768, 512)
    assert not m.pos_embed.requires_grad and not m.decoder_pos_embed.requires_grad
    assert torch.equal(m.pos_embed[0], sincos_2d(768, 14, 14, cls_token=True))
    assert m.blocks[0].norm1.eps == 1e-6 and m.norm.eps == 1e-6
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) > 0
    assert abs(m.cls_token.std().item() - 0.02) < 0.005
    assert torch.all(m.blocks[0].attn.qkv.bias == 0)
    w = m.blocks[0].mlp.fc1.weight  # xavier uniform bound sqrt(6 / (fan_in + fan_out))
    assert w.abs().max() <= (6 / (768 + 3072)) ** 0.5


def test_sincos_first_half_encodes_columns():
    emb = sincos_2d(64, 4, 4)
    same_row = emb[1], emb[2]  # (row 0, col 1) and (row 0, col 2)
    assert torch.equal(same_row[0][32:], same_row[1][32:]) and not torch.equal(same_row[0][:32], same_row[1][:32])
    same_col = emb[1], emb[5]  # (row 0, col 1) and (row 1, col 1)
    assert torch.equal(same_col[0][:32], same_col[1][:32])


def test_position_embedding_interpolation_for_other_sizes():
    m = tiny_mae(img_size=32)
    pe = m.pos_embed.detach()
    assert resize_pos_embed(pe, (2, 2)) is pe
    bigger = resize_pos_embed(pe, (4, 4))
    assert bigger.shape == (1, 17, 192) and torch.equal(bigger[:, :1], pe[:, :1])
    loss, pred, mask = m(torch.randn(1, 3, 64, 64))
    assert pred.shape == (1, 16, 768) and torch.isfinite(loss)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        m(torch.randn(1, 3, 40, 40))


def test_block_and_grid_masks():
    grid = (8, 8)
    g = make_noise("grid", 4, grid, 0.75, generator=torch.Generator().manual_seed(1))
    m = tiny_mae(img_size=128, mask_strategy="grid")
    _, mask, _ = m.masks_from_noise(g, 0.75)
    kept = (mask == 0).reshape(4, 8, 8)
    for b in range(4):
        r, c = torch.nonzero(kept[b], as_tuple=True)
        assert len(r) == 16 and len(set((r % 2).tolist())) == 1 and len(set((c % 2).tolist())) == 1

    def adjacent_masked(noise):
        _, mk, _ = m.masks_from_noise(noise, 0.5)
        mk = mk.reshape(-1, 8, 8)
        return ((mk[:, 1:] * mk[:, :-1]).sum() + (mk[:, :, 1:] * mk[:, :, :-1]).sum()).item()

    gen = torch.Generator().manual_seed(0)
    block = make_noise("block", 16, grid, 0.5, generator=gen)
    rand = make_noise("random", 16, grid, 0.5, generator=gen)
    assert m.masks_from_noise(block, 0.5)[1].sum(1).eq(32).all()
    assert adjacent_masked(block) > 1.3 * adjacent_masked(rand)  # blocks are contiguous
    with pytest.raises(ValueError, match="unknown mask strategy"):
        make_noise("stripes", 1, grid, 0.5)


def test_all_factories_exist():
    sizes = ["tiny", "small", "base", "large", "huge"]
    assert {f"mae_vit_{s}_patch{p}" for s in sizes for p in (16, 14)} <= set(MODELS)
    m = MODELS["mae_vit_small_patch14"](img_size=28, decoder_depth=1)
    assert m.patch_embed.proj.weight.shape == (384, 3, 14, 14) and len(m.blocks) == 12


def test_one_mask_ratio_rule_for_every_strategy():
    """Random and grid masking refuse the same ratios (grid once clamped 1.0 to a 1e6 x 1e6 cell instead)."""
    import torch

    from mae_core.masking import grid_noise, kept_patches
    from mae_core.models_mae import MaskedAutoencoderViT
    assert kept_patches(16, 0.75) == 4 and kept_patches(16, 0.0) == 16
    for bad in (1.0, -0.1, 0.97):  # 0.97 of 16 patches keeps none
        with pytest.raises(ValueError, match="mask_ratio must be in"):
            grid_noise(2, (4, 4), bad)
        with pytest.raises(ValueError, match="mask_ratio must be in"):
            MaskedAutoencoderViT.masks_from_noise(torch.rand(2, 16), bad)
