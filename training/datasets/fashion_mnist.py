"""Fashion-MNIST from the original IDX files (28×28×1, 60k train / 10k test, 10 classes).

Default folder: the Debian package `dataset-fashion-mnist`; any folder holding the four files works
(`--data-dir` or $FASHION_MNIST_DIR).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfi_core.datasets import read_idx
from training.datasets.base import Dataset, DataSourceMissing

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = [
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]  # fmt: skip
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INSTALL_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian), or point --data-dir / "
    "$FASHION_MNIST_DIR at a folder with the four *-ubyte.gz files of the data set's release"
)


def resolve_dir(data_dir: str | Path | None = None) -> Path:
    return Path(data_dir or os.environ.get("FASHION_MNIST_DIR") or DEBIAN_DIR)


def load(split: str = "train", data_dir: str | Path | None = None) -> Dataset:
    if split not in FILES:
        raise ValueError(f"Fashion-MNIST split must be one of {sorted(FILES)}, got {split!r}")
    folder = resolve_dir(data_dir)
    image_file, label_file = (folder / name for name in FILES[split])
    missing = [str(p) for p in (image_file, label_file) if not p.is_file()]
    if missing:
        raise DataSourceMissing(f"Fashion-MNIST files not found: {', '.join(missing)}; {INSTALL_HINT}")
    images = read_idx(image_file)
    labels = read_idx(label_file).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{folder}: unexpected shapes images {images.shape}, labels {labels.shape}")
    return Dataset(
        name="fashion-mnist",
        split=split,
        data=images[:, :, :, None].copy(),
        labels=labels,
        class_names=list(CLASS_NAMES),
        source=str(folder),
    )
