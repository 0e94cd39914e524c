"""IJCV Fig. 7: the 8-Gaussians experiment — which inverters map test points of every mode back into that mode.

    bash scripts/experiment_gaussians.sh      # per seed: the GAN, three inverters, then this report

Expects `RUNS/<method>/inverter.safetensors` for method in dfi, enc_latent, enc_image, each trained on the same
frozen GAN. A test point of mode k is *recovered* when
G(inverter(x)) lands within 3 σ (0.3) of centre k; a mode counts as recovered when at least half of its test
points are. The GAN's own samples are scored the same way (which modes it generates at all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.core.runs import RunDir
from training.datasets.gaussians import MINOR_MODES, N_MODES, STD, load, mode_centres
from training.inversion.dfi import load_inverter

METHODS = ("enc_image", "enc_latent", "dfi")
RADIUS_OK = 3 * STD
MODE_RECOVERED = 0.5


def nearest_mode(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest centre, distance to it) per point."""
    distances = np.linalg.norm(points[:, None, :] - mode_centres()[None], axis=2)
    return distances.argmin(1), distances.min(1)


def mode_recovery(targets: np.ndarray, reconstructions: np.ndarray) -> dict[str, Any]:
    """Per mode: the fraction of test points whose reconstruction lands within 3σ of the point's own mode."""
    true_mode, _ = nearest_mode(targets)
    landed, distance = nearest_mode(reconstructions)
    ok = (landed == true_mode) & (distance <= RADIUS_OK)
    per_mode = [float(ok[true_mode == k].mean()) if (true_mode == k).any() else 0.0 for k in range(N_MODES)]
    return {
        "per_mode": [round(v, 3) for v in per_mode],
        "modes_recovered": int(sum(v >= MODE_RECOVERED for v in per_mode)),
        "minor_modes_recovered": int(sum(per_mode[k] >= MODE_RECOVERED for k in MINOR_MODES)),
        "mse": float(((reconstructions - targets) ** 2).sum(1).mean()),
    }


@torch.no_grad()
def run(runs: Path, docs: Path, name: str = "gaussians") -> dict[str, Any]:
    test = load("test")
    x = torch.from_numpy(test.data)
    result: dict[str, Any] = {"n_test": len(test), "methods": {}}
    recon: dict[str, np.ndarray] = {}
    G = None
    for method in METHODS:
        inverter, G, _, _ = load_inverter(RunDir(runs / method).final_weights("inverter"), "cpu")
        recon[method] = G(inverter(x)).numpy()
        result["methods"][method] = mode_recovery(test.data, recon[method])
    samples = G(torch.randn(len(test), G.cfg.z_dim, generator=torch.Generator().manual_seed(0))).numpy()
    landed, distance = nearest_mode(samples)
    result["gan_samples_per_mode"] = [int(((landed == k) & (distance <= RADIUS_OK)).sum()) for k in range(N_MODES)]
    docs.mkdir(parents=True, exist_ok=True)
    (docs / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(test.data, samples, recon, result, docs / f"{name}.png")
    return result


def _plot(real: np.ndarray, samples: np.ndarray, recon: dict[str, np.ndarray], result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("test points / GAN samples", samples), *recon.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (title, points) in zip(axes, panels, strict=True):
        ax.scatter(real[:, 0], real[:, 1], s=2, c="0.75", label="test points")
        ax.scatter(
            points[:, 0], points[:, 1], s=2, c="tab:blue", label="GAN samples" if title.startswith("test") else "G(ẑ)"
        )
        if title in result["methods"]:
            r = result["methods"][title]
            title = f"{title}: {r['modes_recovered']}/8 modes ({r['minor_modes_recovered']}/2 minor)"
        ax.set_title(title, fontsize=10)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
