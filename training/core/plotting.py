"""Pictures of results: image grids, scatter plots, and matplotlib set up once for files (Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dfi_core.preprocessing import to_uint8


def image_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """[N, C, H, W] float [-1, +1] → one [H', W', C] uint8 grid (white padding), row-major."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    tiles = to_uint8(array)
    n, h, w, c = tiles.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = tile
    return grid


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    grid = image_grid(images, nrow)
    picture = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def save_points(points: torch.Tensor | np.ndarray, path: str | Path, reference: np.ndarray | None = None) -> Path:
    """Scatter plot of 2-D samples (the Gaussians experiment), real data in grey behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    array = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.75", label="real")
    ax.scatter(array[:, 0], array[:, 1], s=2, c="tab:blue", label="samples")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display on servers and CI), imported on first use so
    modules that only sometimes plot stay light."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
