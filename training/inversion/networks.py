"""DFI's two networks (IJCV sec. 3.1, Fig. 1): D^f, the frozen discriminator's features as one flat vector, and
the connection network CN that maps them to the latent.

    image [N, C, H, W] float32, [-1, +1] → D^f [N, F] float32 → ẑ [N, z_dim] float32
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.gan.networks import Discriminator


@dataclass
class FeatureExtractorConfig:
    """Which discriminator features form D^f (IJCV sec. 4.7).

    `taps` are D's named feature maps; `last` is used as is, any other tap is average-pooled to
    pool_size × pool_size (R in Table 5; R = 1 is global average pooling) and flattened; all are concatenated.
    """

    taps: tuple[str, ...] = ("last",)
    pool_size: int = 4


class DiscriminatorFeatures(nn.Module):
    """D^f: a frozen discriminator's features as one flat vector per image. [N, C, H, W] → [N, F]."""

    def __init__(self, discriminator: Discriminator, cfg: FeatureExtractorConfig) -> None:
        super().__init__()
        unknown = set(cfg.taps) - set(discriminator.feature_names)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; the discriminator has {discriminator.feature_names}")
        self.discriminator, self.cfg = discriminator, cfg
        # Blocks run in D's order, so a tap list in another order still comes out in D's order.
        self.taps = [name for name in discriminator.feature_names if name in cfg.taps]
        with torch.no_grad():
            probe = torch.zeros(2, *discriminator.cfg.shape)
            was_training = discriminator.training
            discriminator.eval()
            self.out_dim = int(self.forward(probe).shape[1])
            discriminator.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.discriminator.features(x, self.taps)
        parts = []
        for name in self.taps:
            h = maps[name]
            if h.dim() == 4:
                h = nn.functional.adaptive_avg_pool2d(h, self.cfg.pool_size)
            parts.append(h.flatten(1))
        return torch.cat(parts, dim=1)


@dataclass
class ConnectionNetworkConfig:
    """IJCV sec. 4 / Fig. 1: FC 1024 – GN – LeakyReLU – FC 1024 – GN – LeakyReLU – FC |z|; depth = hidden layers."""

    in_dim: int
    z_dim: int
    hidden: int = 1024
    depth: int = 2
    groups: int = 32  # GroupNorm groups (Wu & He 2018 default)


class ConnectionNetwork(nn.Module):
    """CN: D^f(x) [N, F] → ẑ [N, z_dim]."""

    def __init__(self, cfg: ConnectionNetworkConfig) -> None:
        super().__init__()
        if cfg.depth < 1 or cfg.hidden % cfg.groups:
            raise ValueError(f"connection network needs depth ≥ 1 and hidden divisible by groups, got {cfg}")
        self.cfg = cfg
        layers: list[nn.Module] = []
        width = cfg.in_dim
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.GroupNorm(cfg.groups, cfg.hidden), nn.LeakyReLU(0.2)]
            width = cfg.hidden
        layers.append(nn.Linear(width, cfg.z_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
