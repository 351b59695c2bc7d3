"""Masking strategies, all expressed as per-patch noise.

The model keeps the `len_keep` patches with the lowest noise, so every strategy
keeps exactly `int(N * (1 - ratio))` patches per sample; a strategy only decides
which patches are preferred (paper Figure 6: random, block-wise, grid).
"""
import math

import torch

STRATEGIES = ("random", "block", "grid")


def random_noise(batch: int, grid: tuple[int, int], ratio: float, generator=None, device=None) -> torch.Tensor:
    return torch.rand(batch, grid[0] * grid[1], generator=generator, device=device)


def kept_patches(n: int, mask_ratio: float) -> int:
    """The one mask-ratio rule (the official MAE's `int(N * (1 - mask_ratio))` patches kept): a ratio in [0, 1)
    that keeps at least one of the `n` patches; else ValueError. The recipes ask for (0, 1): pretraining masks."""
    len_keep = int(n * (1 - mask_ratio))
    if not 0 <= mask_ratio < 1 or len_keep < 1:  # a negative len_keep would silently slice off from the end
        raise ValueError(f"mask_ratio must be in [0, 1) and keep at least one of {n} patches, got {mask_ratio}")
    return len_keep


def grid_noise(batch: int, grid: tuple[int, int], ratio: float, generator=None, device=None) -> torch.Tensor:
    """Keep one patch in every s x s cell (s = round(sqrt(1 / (1 - ratio)))), at a random offset per sample."""
    h, w = grid
    kept_patches(h * w, ratio)
    s = max(1, round(math.sqrt(1.0 / (1.0 - ratio))))
    off = torch.randint(0, s, (batch, 2), generator=generator)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    keep = ((rows - off[:, 0, None, None]) % s == 0) & ((cols - off[:, 1, None, None]) % s == 0)
    tie = torch.rand(batch, h * w, generator=generator)
    return (tie + 2.0 * (~keep).reshape(batch, -1).float()).to(device)


def _block_mask(h: int, w: int, num_mask: int, generator, min_patches: int = 4, attempts: int = 10) -> torch.Tensor:
    """BEiT's block-wise masking: paste random rectangles (area >= min_patches,
    aspect ratio in [0.3, 1/0.3]) until about `num_mask` patches are covered."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    count = 0
    log_ratio = (math.log(0.3), math.log(1 / 0.3))
    rand = lambda: torch.rand((), generator=generator).item()  # noqa: E731
    while count < num_mask:
        budget = num_mask - count
        added = 0
        for _ in range(attempts):
            target = min_patches + rand() * (max(min_patches, budget) - min_patches)
            aspect = math.exp(log_ratio[0] + rand() * (log_ratio[1] - log_ratio[0]))
            bh = int(round(math.sqrt(target * aspect)))
            bw = int(round(math.sqrt(target / aspect)))
            if 0 < bh <= h and 0 < bw <= w:
                top = int(rand() * (h - bh + 1))
                left = int(rand() * (w - bw + 1))
                region = mask[top:top + bh, left:left + bw]
                new = int((~region).sum())
                if 0 < new <= budget:
                    region.fill_(True)
                    added = new
                    break
        if added == 0:
            break
        count += added
    return mask


def block_noise(batch: int, grid: tuple[int, int], ratio: float, generator=None, device=None) -> torch.Tensor:
    """Block-wise masks; patches outside the blocks are preferred for keeping, and
    ties are broken at random so the kept count is exact."""
    h, w = grid
    num_mask = int(h * w) - int(h * w * (1 - ratio))
    noise = torch.rand(batch, h * w, generator=generator)
    for b in range(batch):
        noise[b] += 2.0 * _block_mask(h, w, num_mask, generator).reshape(-1).float()
    return noise.to(device)


def make_noise(strategy: str, batch: int, grid: tuple[int, int], ratio: float, generator=None, device=None) -> torch.Tensor:
    """Noise [B, N] for a strategy; sorting it ascending gives the keep order."""
    fn = {"random": random_noise, "block": block_noise, "grid": grid_noise}.get(strategy)
    if fn is None:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    return fn(batch, grid, ratio, generator=generator, device=device)


class NoiseSampler:
    """Picklable per-sample noise for data workers: `NoiseSampler(...)()` -> [N]."""

    def __init__(self, strategy: str, grid: tuple[int, int], ratio: float):
        make_noise(strategy, 1, grid, ratio)  # validate early, in the main process
        self.strategy, self.grid, self.ratio = strategy, tuple(grid), ratio

    def __call__(self) -> torch.Tensor:
        return make_noise(self.strategy, 1, self.grid, self.ratio)[0]
