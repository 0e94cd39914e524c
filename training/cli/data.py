"""`data fetch | prepare | info`: the data sets' sources, caches and shapes."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from training.cli.common import DataDirOpt, DataOpt, fail


def data_fetch(name: str, cache_dir: DataDirOpt = None) -> None:
    """Download a data set's source files into the cache (emoji: npm pack of the two emoji packs)."""
    from training.datasets import DataSourceMissing

    try:
        if name == "emoji":
            from training.datasets import emoji

            paths = emoji.fetch(Path(cache_dir) if cache_dir else None)
            typer.echo("\n".join(str(p) for p in paths))
        elif name == "fashion-mnist":
            from training.datasets import fashion_mnist

            folder = fashion_mnist.resolve_dir(cache_dir)
            fashion_mnist.load("test", folder)
            typer.echo(f"Fashion-MNIST present in {folder}")
        elif name == "gaussians":
            typer.echo("gaussians are synthetic: nothing to fetch")
        else:
            fail(f"unknown data set {name!r}")
    except DataSourceMissing as error:
        fail(str(error))


def data_prepare(name: str, cache_dir: DataDirOpt = None) -> None:
    """Fetch if needed, then decode the data set into its cache (emoji → one npz of 64×64 RGB)."""
    data_fetch(name, cache_dir)
    if name == "emoji":
        from training.datasets import emoji

        typer.echo(str(emoji.prepare(Path(cache_dir) if cache_dir else None)))


def data_info(name: DataOpt = "fashion-mnist", data_dir: DataDirOpt = None, size: int | None = None,
              channels: int | None = None) -> None:  # fmt: skip
    """Print shapes, value ranges and label counts of each split."""
    import numpy as np

    from training.datasets import DataSourceMissing, load_dataset

    splits = ["all"] if name == "folder" else ["train", "test"]
    for split in splits:
        try:
            data = load_dataset(name, split, data_dir, size, channels)
        except (DataSourceMissing, ValueError) as error:
            fail(str(error))
        counts = np.bincount(data.labels).tolist() if data.labels is not None else []
        typer.echo(json.dumps({"split": split, "n": len(data), "shape": data.shape, "dtype": str(data.data.dtype),
                               "min": float(data.data.min()), "max": float(data.data.max()),
                               "classes": dict(zip(data.class_names, counts, strict=False))}))  # fmt: skip
