"""Differentiable augmentation of D's inputs (DiffAugment, Zhao et al. 2020, "Differentiable Augmentation for
Data-Efficient GAN Training", sec. 3): the same random colour / translation / cutout is applied to real and fake
images before *every* D call, in D's step and in G's, so D cannot memorise a small training set (emoji: 4,000
images) and G still gets gradients through the augmentation.

Written by hand rather than taken from kornia or the authors' DiffAugment code: every draw here comes from the
training loop's own `torch.Generator`, which the checkpoint saves, so a resumed run repeats the exact steps of the
uninterrupted one (training/gan/train.py); kornia's augmentations draw from the global RNG. The three operations
follow the paper's reference implementation (its `rand_brightness` / `rand_saturation` / `rand_contrast`,
`rand_translation` with ratio 1/8 and `rand_cutout` with ratio 1/2), on images in the model range [-1, +1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """ "color,translation,cutout" → its operations in that order; "" = none. Unknown names are an error."""
    ops = tuple(part.strip() for part in policy.split(",") if part.strip())
    unknown = [op for op in ops if op not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; choose from {AUGMENTATIONS} (comma-separated)")
    return ops


def _uniform(shape: tuple[int, ...], rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=rng).to(like.device, like.dtype)


def _integers(low: int, high: int, shape: tuple[int, ...], rng: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=rng).to(device)


def color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Brightness ± 0.5, saturation × [0, 2] (colour images only), contrast × [0.5, 1.5], per sample."""
    n = x.shape[0]
    x = x + (_uniform((n, 1, 1, 1), rng, x) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform((n, 1, 1, 1), rng, x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform((n, 1, 1, 1), rng, x) + 0.5) + mean


def translation(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its side (integer pixels), filling with zeros (mid-grey in [-1, 1])."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = _integers(-sy, sy + 1, (n, 1, 1), rng, x.device)
    dx = _integers(-sx, sx + 1, (n, 1, 1), rng, x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)  # +1: into the padded frame
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))  # the zero border every out-of-frame index lands on
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side `ratio` × the image side at a random place per image (it may leave the frame)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _integers(0, h + (1 - ch % 2), (n, 1, 1), rng, x.device) - ch // 2
    left = _integers(0, w + (1 - cw % 2), (n, 1, 1), rng, x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


class DiffAugment:
    """`augment(x, rng)`: the policy's operations in order on a batch [N, C, H, W] in [-1, +1]; identity when the
    policy is empty (and for point data sets, which have no pixels to move)."""

    def __init__(self, policy: str = "") -> None:
        self.ops = parse_policy(policy)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        if x.dim() != 4:
            return x
        for op in self.ops:
            x = _OPS[op](x, rng)
        return x
