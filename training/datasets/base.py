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

    def without_classes(self, classes: tuple[int, ...] | list[int]) -> Dataset:
        """The samples whose label is not in `classes` (a mode-drop GAN's training set); names stay as they are."""
        if not classes:
            return self
        if self.labels is None:
            raise ValueError(f"data set {self.name!r} has no labels: it cannot leave classes out")
        unknown = sorted(set(classes) - set(range(len(self.class_names))))
        if unknown:
            raise ValueError(f"{self.name} has classes 0..{len(self.class_names) - 1}; cannot leave out {unknown}")
        if len(set(classes)) >= len(self.class_names):
            raise ValueError(
                f"leaving out all {len(self.class_names)} classes of {self.name} leaves nothing to train on"
            )
        keep = ~np.isin(self.labels, np.asarray(list(classes)))
        attributes = {
            k: [v for v, kept in zip(values, keep, strict=True) if kept] for k, values in self.attributes.items()
        }
        return Dataset(self.name, self.split, self.data[keep], self.labels[keep], list(self.class_names), attributes,
                       f"{self.source} without classes {sorted(set(classes))}")  # fmt: skip

    def label_batch(self, index: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        if self.labels is None:
            raise ValueError(f"data set {self.name!r} has no labels")
        index = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        return torch.from_numpy(self.labels[index].astype(np.int64)).to(device)
