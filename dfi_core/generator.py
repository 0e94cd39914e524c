"""The generator architecture G (DCGAN-style, IJCV sec. 4), shared by training and the service's refinement.

Shapes:
    z       [N, z_dim] float32, prior N(0, I)
    image   [N, C, H, W] float32, [-1, +1] (tanh output), H = W in {28, 32, 64}
    point   [N, D] float32 when `GeneratorConfig.shape` is (D,) (the 2-D Gaussians experiment, IJCV sec. 4.1)

Image sizes map to a base resolution and a number of stride-2 stages (`stages_for`): 28 = 7·2², 32 = 4·2³,
64 = 4·2⁴. It lives in dfi_core, not in the training package, because a bundle's `generator.safetensors` is this
module's state_dict plus its `GeneratorConfig` as JSON: whoever refines latents (IJCV eq. 2, `dfi_core.refinement`)
rebuilds G from that file, and the service never imports `training` (`training.gan.networks` re-exports it).
Needs torch: `dfi_core/__init__` does not import it, so the ONNX-only service image works without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def stages_for(size: int) -> tuple[int, int]:
    """(base resolution, number of ×2 stages) for a square image side."""
    for base in (7, 4):
        stages = math.log2(size / base)
        if size % base == 0 and stages.is_integer() and stages >= 1:
            return base, int(stages)
    raise ValueError(f"image size {size} is not 7·2^k or 4·2^k (supported: 28, 32, 64, ...)")


@dataclass
class GeneratorConfig:
    shape: tuple[int, ...]  # (C, H, W) for images, (D,) for points
    z_dim: int = 64
    width: int = 64  # channels at the last up-sampling stage (DCGAN's ngf); MLP hidden units for points


def channels_for(width: int, stages: int) -> list[int]:
    """Channels at each stage from the base resolution upward: width·2^(k-1), ..., width."""
    return [width * 2 ** (stages - 1 - i) for i in range(stages)]


class Generator(nn.Module):
    """z [N, z_dim] → image [N, C, H, W] in [-1, +1] (or point [N, D] for a (D,) shape)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if len(cfg.shape) == 1:  # points: two hidden FC layers (IJCV sec. 4.1)
            h = cfg.width
            self.net = nn.Sequential(
                nn.Linear(cfg.z_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, cfg.shape[0])
            )
            return
        c, size, _ = cfg.shape
        base, stages = stages_for(size)
        chans = channels_for(cfg.width, stages)
        self.base, self.base_channels = base, chans[0]
        self.project = nn.Sequential(
            nn.Linear(cfg.z_dim, chans[0] * base * base, bias=False),
            nn.BatchNorm1d(chans[0] * base * base),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for i in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(),
            ]
        layers += [nn.ConvTranspose2d(chans[-1], c, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if len(self.cfg.shape) == 1:
            return self.net(z)
        x = self.project(z).view(-1, self.base_channels, self.base, self.base)
        return self.net(x)
