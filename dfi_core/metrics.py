"""Reconstruction metrics shared by the training package's evaluation and the service's metric jobs.

Images are [N, C, H, W] float32 in [-1, +1]; every metric maps them to [0, 1] first (clipped) and uses
data_range 1, as `training.dfi.reconstruction_scores`. PSNR is numpy (10·log10(1/MSE) per image, the formula
torchmetrics uses with reduction='none'); SSIM is torchmetrics' (11×11 Gaussian window), imported lazily because
the ONNX-only API has no torch — `ssim` raises `MetricUnavailable` there, naming what to install.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

METRICS = ("psnr", "ssim", "class_consistency", "latent_norm")


class MetricUnavailable(RuntimeError):
    """A metric whose implementation or weights are missing here; the message names what is needed."""


def to_unit(images: np.ndarray) -> np.ndarray:
    return (np.clip(images.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0


def psnr(reconstructions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[N] dB. An exact reconstruction gives +inf (MSE 0), as torchmetrics."""
    mse = ((to_unit(reconstructions) - to_unit(targets)) ** 2).reshape(len(targets), -1).mean(1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse)


def ssim(reconstructions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[N] torchmetrics SSIM (Gaussian 11×11, σ 1.5, k1 0.01, k2 0.03) on [0, 1] images."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchmetrics") is None:
        raise MetricUnavailable("ssim needs torch and torchmetrics (the `worker` extra)")
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = (torch.from_numpy(to_unit(x).astype(np.float32)) for x in (reconstructions, targets))
    return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none").double().numpy()


def class_consistency(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N] 1.0 where the classifier's label of the reconstruction equals the true label (ICLR sec. 4)."""
    return (np.asarray(logits).argmax(1) == np.asarray(labels)).astype(np.float64)


def summarize(values: np.ndarray) -> dict[str, Any]:
    """mean, std (n − 1, as torch.std) and n of per-image values."""
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "n": int(len(values))}
