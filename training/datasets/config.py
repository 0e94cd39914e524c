"""Which data set a run reads: part of every run config (GAN, classifier, SCGAN)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    data_dir: str | None = None
    size: int | None = None  # only for `folder`: the side images are resized to
    channels: int | None = None  # only for `folder`: 1 or 3
    # Class indices left out of the training split (issue 23's mode-drop GANs: a G that never saw them).
    exclude_classes: tuple[int, ...] = ()
