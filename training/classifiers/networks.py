"""The data set's classifier network: a small CNN whose logits judge class-consistency (ICLR sec. 4) and whose
penultimate features are the space of the domain Fréchet distance.

    image [N, C, H, W] float32, [-1, +1] → logits [N, num_classes]; features [N, feature_dim]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.gan.networks import ConvEncoder


@dataclass
class ClassifierConfig:
    shape: tuple[int, ...]
    num_classes: int
    width: int = 32
    feature_dim: int = 128  # penultimate features: the space of the domain Fréchet distance


class Classifier(nn.Module):
    """Small CNN per data set: class logits for class-consistency, penultimate features for the FD."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = ConvEncoder(cfg.shape, cfg.feature_dim, cfg.width)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(cfg.feature_dim, cfg.num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
