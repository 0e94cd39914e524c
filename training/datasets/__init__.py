"""Data sets by name: `load_dataset("fashion-mnist", "train")`.

| name          | sample                   | source                                              |
|---------------|--------------------------|-----------------------------------------------------|
| fashion-mnist | [1, 28, 28] image        | IDX files (Debian `dataset-fashion-mnist` or a dir) |
| emoji         | [3, 64, 64] image        | npm emoji-datasource-{twitter,google} 16.0.0        |
| gaussians     | [2] point                | synthetic, IJCV sec. 4.1                            |
| folder        | [C, S, S] image          | any folder of images (--data-dir, --size, --channels) |
"""

from __future__ import annotations

from training.datasets.base import Dataset, DataSourceMissing, default_cache_dir

DATASETS = ("fashion-mnist", "emoji", "gaussians", "folder")


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | None = None,
    size: int | None = None,
    channels: int | None = None,
) -> Dataset:
    if name == "fashion-mnist":
        from training.datasets import fashion_mnist

        return fashion_mnist.load(split, data_dir)
    if name == "emoji":
        from pathlib import Path

        from training.datasets import emoji

        return emoji.load(split, cache_dir=Path(data_dir) if data_dir else None)
    if name == "gaussians":
        from training.datasets import gaussians

        return gaussians.load(split)
    if name == "folder":
        from training.datasets import image_folder

        if data_dir is None or size is None or channels is None:
            raise ValueError("data set 'folder' needs --data-dir, --size and --channels")
        return image_folder.load(data_dir, size, channels, split)
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


__all__ = ["DATASETS", "DataSourceMissing", "Dataset", "default_cache_dir", "load_dataset"]
