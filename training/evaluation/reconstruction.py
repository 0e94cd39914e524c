"""Reconstruction by one trained inverter (torch checkpoint) on unseen test data, for `evaluate reconstruction`:
PSNR / SSIM / MSE of G(ẑ) per image (and of G(ẑ_opt) after eq. 2), and the latent error on fresh generated pairs."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from dfi_core.refinement import refine
from training.datasets import Dataset
from training.evaluation.scoring import Scores, as_numpy

RECONSTRUCTION_METRICS = ("psnr", "ssim", "mse")  # images; points (IJCV Fig. 7) have MSE only


def _add(scores: Scores, recon: torch.Tensor, x: torch.Tensor) -> None:
    if x.dim() == 4:
        scores.add_images(recon, x)
    else:  # points [N, D]: their own coordinates, no [0, 1] mapping
        scores.add("mse", ((as_numpy(recon).astype(np.float64) - as_numpy(x)) ** 2).mean(1))


@torch.no_grad()
def latent_error(
    inverter: nn.Module, G: nn.Module, n: int, z_dim: int, device: str | torch.device, seed: int = 0, batch: int = 250
) -> float:
    """Mean ‖z − ẑ‖² / z_dim over n fresh generated pairs (z ~ N(0, I) from a CPU generator seeded `seed`)."""
    rng = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), z_dim, generator=rng).to(device)
        total += (inverter(G(z)) - z).pow(2).sum().item()
    return total / (n * z_dim)


@torch.no_grad()
def evaluate_reconstruction(
    inverter: nn.Module,
    G: nn.Module,
    data: Dataset,
    n: int,
    device: str | torch.device,
    batch: int = 250,
    seed: int = 0,
    refine_steps: int = 0,
    refine_method: str = "adam",
    refine_lr: float | None = None,
    bound: float | None = None,
) -> dict[str, Any]:
    """Reconstruction of the first n samples of `data` (use the test split, the ICLR metric on unseen data):
    PSNR / SSIM / MSE summaries {"mean", "std", "n"} over images (points: MSE); the latent error on n fresh
    generated pairs; with refine_steps > 0 the same scores after refining ẑ by eq. 2 (key "refined")."""
    n = min(n, len(data))
    if n < 1:
        raise ValueError("evaluate_reconstruction needs n ≥ 1")
    z_dim = inverter.connection_network.cfg.z_dim  # type: ignore[union-attr]
    direct, refined = Scores(RECONSTRUCTION_METRICS), Scores(RECONSTRUCTION_METRICS)
    infer_s, refine_s = 0.0, 0.0
    for start in range(0, n, batch):
        x = data.batch(torch.arange(start, min(start + batch, n)), device)
        t0 = time.perf_counter()
        z_hat = inverter(x)
        infer_s += time.perf_counter() - t0
        _add(direct, G(z_hat), x)
        if refine_steps:
            t0 = time.perf_counter()
            z_opt, _ = refine(G, x, z_hat, steps=refine_steps, method=refine_method, lr=refine_lr, bound=bound)
            refine_s += time.perf_counter() - t0
            _add(refined, G(z_opt), x)
    result: dict[str, Any] = {"n": n, **direct.summary(), "seconds_inference": infer_s}
    result["latent_error"] = latent_error(inverter, G, n, z_dim, device, seed, batch)
    if refine_steps:
        result["refined"] = {"steps": refine_steps, "method": refine_method, **refined.summary(),
                             "seconds_refinement": refine_s}  # fmt: skip
    return result
