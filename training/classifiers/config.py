"""The run config of the data set's classifier (registered kind `classifier`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from training.classifiers.networks import ClassifierConfig
from training.core.config import register_config
from training.datasets.config import DataConfig


@register_config
@dataclass
class ClassifierTrainConfig:
    data: DataConfig
    model: ClassifierConfig
    steps: int = 3_000
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    log_every: int = 100
    device: str = "auto"
    kind: str = field(default="classifier", init=False)

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("invalid classifier config: steps and batch size must be ≥ 1 and lr > 0")
