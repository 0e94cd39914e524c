"""Reconstruction metrics shared by the training package's evaluation and the service's metric jobs.

Images are [N, C, H, W] float32 in [-1, +1]; every image metric maps them to [0, 1] first (clipped) and uses
data_range 1. MSE and PSNR are numpy float64 (10·log10(1/MSE) per image, the formula torchmetrics uses with
reduction='none'); SSIM is torchmetrics' (11×11 Gaussian window), imported lazily because the ONNX-only API has no
torch — `ssim` raises `MetricUnavailable` there, naming what to install.

One place for each idea: `IMAGE_METRICS` maps a name to its per-image function of (reconstructions, targets) and
`score_images` computes a chosen list of them for a batch; the two metrics of other inputs — `class_consistency`
(a judge's logits of the reconstructions and the true labels) and `latent_norm` (the latents) — are functions of
their own. `summarize` is the one summary format, {"mean", "std", "n"}, of the service's jobs and of
`training.evaluation.scoring`, which accumulates these per-image values over batches for every training caller.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

METRICS = ("psnr", "ssim", "ms_ssim", "class_consistency", "latent_norm")
# Wang et al. 2003's five scale weights; small images use the first k that fit, renormalised (see `ms_ssim`).
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_KERNEL = 11
# Metrics that need pretrained networks this project cannot fetch (no network to their hosts): reported as
# unavailable with what is missing, never attempted.
UNAVAILABLE = {
    "lpips": "needs torchvision's AlexNet weights and the LPIPS linear layers (torchvision does not install beside "
    "torch 2.13 here, and the weights cannot be downloaded)",
    "fid": "needs torch-fidelity's Inception weights ($TORCH_HOME/hub/checkpoints/"
    "weights-inception-2015-12-05-6726825d.pth), which cannot be downloaded here; use the domain FD instead",
    "inception_score": "needs the same Inception weights as fid",
}


class MetricUnavailable(RuntimeError):
    """A metric whose implementation or weights are missing here; the message names what is needed."""


def to_unit(images: np.ndarray) -> np.ndarray:
    return (np.clip(images.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0


def mse(reconstructions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[N] mean squared error per image on [0, 1] images (the MSE of `psnr`)."""
    return ((to_unit(reconstructions) - to_unit(targets)) ** 2).reshape(len(targets), -1).mean(1)


def psnr(reconstructions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[N] dB. An exact reconstruction gives +inf (MSE 0), as torchmetrics."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse(reconstructions, targets))


def ssim(reconstructions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[N] torchmetrics SSIM (Gaussian 11×11, σ 1.5, k1 0.01, k2 0.03) on [0, 1] images."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchmetrics") is None:
        raise MetricUnavailable("ssim needs torch and torchmetrics (the `worker` extra)")
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = (torch.from_numpy(to_unit(x).astype(np.float32)) for x in (reconstructions, targets))
    return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none").double().numpy()


def ms_ssim_scales(side: int, kernel: int = MS_SSIM_KERNEL) -> int:
    """The most scales (≤ 5) whose coarsest image is still larger than the Gaussian window."""
    scales = 1
    while scales < len(MS_SSIM_BETAS) and side // 2**scales > kernel - 1:
        scales += 1
    return scales


def ms_ssim(reconstructions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[N] torchmetrics MS-SSIM on [0, 1] images. The standard 5 scales need ≥ 161 px; 28 px images get 2 scales
    and 64 px images 3 (the first weights, renormalised) — comparable within this project, not to 5-scale numbers."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchmetrics") is None:
        raise MetricUnavailable("ms_ssim needs torch and torchmetrics (the `worker` extra)")
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    scales = ms_ssim_scales(min(targets.shape[-2:]))
    betas = tuple(b / sum(MS_SSIM_BETAS[:scales]) for b in MS_SSIM_BETAS[:scales])
    a, b = (torch.from_numpy(to_unit(x).astype(np.float32)) for x in (reconstructions, targets))
    options = {"data_range": 1.0, "kernel_size": MS_SSIM_KERNEL, "betas": betas, "normalize": "relu"}
    values = [multiscale_structural_similarity_index_measure(a[i : i + 1], b[i : i + 1], **options).item()
              for i in range(len(a))]  # fmt: skip
    return np.asarray(values, dtype=np.float64)


def class_consistency(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N] 1.0 where the classifier's label of the reconstruction equals the true label (ICLR sec. 4)."""
    return (np.asarray(logits).argmax(1) == np.asarray(labels)).astype(np.float64)


ImageMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]
# name → per-image function of (reconstructions, targets), both [N, C, H, W] in [-1, 1] → [N] float64. `mse` is here
# for the training package's reconstruction scores; the service's jobs offer the names in METRICS only.
IMAGE_METRICS: dict[str, ImageMetric] = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim, "mse": mse}


def score_images(reconstructions: np.ndarray, targets: np.ndarray, names: Iterable[str]) -> dict[str, np.ndarray]:
    """name → [N] per-image values of each image metric in `names` (keys in the order asked)."""
    names = list(names)
    unknown = [name for name in names if name not in IMAGE_METRICS]
    if unknown:
        raise ValueError(f"unknown image metric(s) {unknown}; known: {list(IMAGE_METRICS)}")
    return {name: IMAGE_METRICS[name](reconstructions, targets) for name in names}


def latent_norm(latents: np.ndarray) -> np.ndarray:
    """[N] ‖ẑ‖₂ per latent (how far inversion lands from the prior's typical shell, √|z| for z ~ N(0, I))."""
    return np.linalg.norm(latents, axis=1).astype(np.float64)


def summarize(values: np.ndarray) -> dict[str, Any]:
    """mean, std (n − 1, as torch.std) and n of per-image values."""
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "n": int(len(values))}
