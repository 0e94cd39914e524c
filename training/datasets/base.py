"""The in-memory data set every loader returns.

Images are kept as uint8 (a quarter of float32's memory: Fashion-MNIST train is 47 MB) and converted to the
model range per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# One exception type and one cache location for both packages (the service reads the same files).
from dfi_core.datasets import DataSourceMissing, default_cache_dir

__all__ = ["DataSourceMissing", "Dataset", "default_cache_dir"]


@dataclass
class Dataset:
    name: str
    split: str
    # images: [N, H, W, C] uint8 [0, 255]; points: [N, D] float32
    data: np.ndarray
    labels: np.ndarray | None = None  # [N] int64 class index, or None
    class_names: list[str] = field(default_factory=list)
    # Extra per-sample annotations (emoji: category, gender, skin tone, hair ...), each a length-N list/array.
    attributes: dict[str, list] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.data):
            raise ValueError(f"{self.name}: {len(self.labels)} labels for {len(self.data)} samples")

    def __len__(self) -> int:
        return len(self.data)

    @property
    def is_image(self) -> bool:
        return self.data.ndim == 4

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample model shape: (C, H, W) for images, (D,) for points."""
        if self.is_image:
            _, h, w, c = self.data.shape
            return (c, h, w)
        return tuple(self.data.shape[1:])

    def batch(self, index: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """Samples at `index` as model input: images [B, C, H, W] float32 [-1, +1]; points [B, D] float32."""
        index = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        chunk = torch.from_numpy(np.ascontiguousarray(self.data[index])).to(device)
        if not self.is_image:
            return chunk.float()
        return chunk.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

    def label_batch(self, index: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        if self.labels is None:
            raise ValueError(f"data set {self.name!r} has no labels")
        index = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        return torch.from_numpy(self.labels[index].astype(np.int64)).to(device)
