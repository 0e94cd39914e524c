"""Fashion-MNIST from the original IDX files (28×28×1, 60k train / 10k test, 10 classes).

Default folder: the Debian package `dataset-fashion-mnist`; any folder holding the four files works
(`--data-dir` or $FASHION_MNIST_DIR). Reading lives in `dfi_core.datasets` (shared with the service's jobs);
this module wraps it in the training package's `Dataset`.
"""

from __future__ import annotations

from pathlib import Path

from dfi_core.datasets import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEBIAN_DIR,
    FASHION_MNIST_FILES,
    FASHION_MNIST_HINT,
    load_fashion_mnist,
)
from dfi_core.datasets import fashion_mnist_dir as resolve_dir
from training.datasets.base import Dataset

DEBIAN_DIR = FASHION_MNIST_DEBIAN_DIR
CLASS_NAMES = list(FASHION_MNIST_CLASSES)
FILES = FASHION_MNIST_FILES
INSTALL_HINT = FASHION_MNIST_HINT

__all__ = ["CLASS_NAMES", "DEBIAN_DIR", "FILES", "INSTALL_HINT", "load", "resolve_dir"]


def load(split: str = "train", data_dir: str | Path | None = None) -> Dataset:
    data = load_fashion_mnist(split, data_dir)
    return Dataset(name=data.name, split=data.split, data=data.images, labels=data.labels,
                   class_names=data.class_names, source=data.source)  # fmt: skip
