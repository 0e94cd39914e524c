"""Eight 2-D Gaussians on a circle (IJCV sec. 4.1, Fig. 7).

Eight modes of std 0.1 on a circle of radius 2; the two modes in the second quadrant are "thinned" (sampled
8× less often) to make the minor modes that GANs tend to drop, as in the paper's experiment.
The samples are drawn from a fixed seed per split, so the data set is the same everywhere.
"""

from __future__ import annotations

import numpy as np

from training.datasets.base import Dataset

RADIUS = 2.0
STD = 0.1
N_MODES = 8
MINOR_MODES = (2, 3)  # angles 90° and 135°: the second quadrant
MINOR_WEIGHT = 1.0 / 8.0
SPLIT_SEEDS = {"train": 0, "test": 1}
SPLIT_SIZES = {"train": 50_000, "test": 2_000}


def mode_centres() -> np.ndarray:
    """[8, 2] float32 centres; mode k sits at angle k·45°."""
    angles = np.arange(N_MODES) * (2 * np.pi / N_MODES)
    return (RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)


def mode_weights() -> np.ndarray:
    weights = np.ones(N_MODES)
    weights[list(MINOR_MODES)] = MINOR_WEIGHT
    return weights / weights.sum()


def load(split: str = "train", n: int | None = None) -> Dataset:
    if split not in SPLIT_SEEDS:
        raise ValueError(f"gaussians split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    n = n or SPLIT_SIZES[split]
    modes = rng.choice(N_MODES, size=n, p=mode_weights())
    points = mode_centres()[modes] + rng.normal(0.0, STD, size=(n, 2)).astype(np.float32)
    return Dataset(
        name="gaussians",
        split=split,
        data=points.astype(np.float32),
        labels=modes.astype(np.int64),
        class_names=[f"mode{k}" for k in range(N_MODES)],
        source=f"synthetic seed={SPLIT_SEEDS[split]}",
    )
