"""IJCV Fig. 17: do real and generated images share the discriminator-feature space D^f?

DFI trains its connection network on D^f of *generated* images only and applies it to *real* ones (IJCV sec. 4.9):
that works when the two feature clouds overlap. For a shipped bundle: D^f (rebuilt from inverter.safetensors) of
n real test images and n samples of G, a 2-D PCA fitted on both (the figure), and two numbers — a cross-validated
linear probe's accuracy at telling them apart (0.5 = indistinguishable) and the variance explained.

    python -m training report dfeatures --bundle models/fashion-mnist --out docs/results/dfeatures
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfi_core.bundle import load_bundle
from dfi_core.datasets import load_split
from dfi_core.preprocessing import to_model_range
from dfi_core.refinement import load_bundle_generator


@torch.no_grad()
def dfeatures(bundle_dir: Path, out: Path, n: int = 2000, seed: int = 0) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from training.export.bundle import INVERTER_FILE
    from training.inversion.dfi import load_export_ready

    bundle = load_bundle(bundle_dir)
    features = load_export_ready(bundle.path(INVERTER_FILE)).features.eval()
    G = load_bundle_generator(bundle).module
    data = load_split(bundle.manifest.dataset.name, "test")
    n = min(n, len(data.images))
    real = torch.from_numpy(to_model_range(data.images[:n]))
    z = torch.randn(n, bundle.manifest.latent.size, generator=torch.Generator().manual_seed(seed))
    fake = torch.cat([G(z[i : i + 250]) for i in range(0, n, 250)])
    f_real = torch.cat([features(real[i : i + 250]) for i in range(0, n, 250)]).numpy().astype(np.float64)
    f_fake = torch.cat([features(fake[i : i + 250]) for i in range(0, n, 250)]).numpy().astype(np.float64)
    both = np.concatenate([f_real, f_fake])
    mean = both.mean(0)
    _, singular, vt = np.linalg.svd(both - mean, full_matrices=False)
    explained = (singular**2) / (singular**2).sum()
    projected = (both - mean) @ vt[:2].T
    labels = np.r_[np.zeros(n), np.ones(n)]
    scaled = (both - mean) / (both.std(0) + 1e-8)
    probe = cross_val_score(LogisticRegression(max_iter=2000, C=0.1), scaled, labels, cv=5)
    result = {
        "bundle": bundle.name, "n_real": n, "n_generated": n, "feature_dim": int(both.shape[1]),
        "pca_explained_variance_top2": [round(float(v), 4) for v in explained[:2]],
        "linear_probe_real_vs_generated_accuracy": round(float(probe.mean()), 4),
        "linear_probe_std": round(float(probe.std()), 4),
        "taps": features.cfg.taps if hasattr(features, "cfg") else None,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{bundle.name}.json").write_text(json.dumps(result, indent=2, default=list) + "\n")
    _plot(projected, n, data.labels[:n], data.class_names, result, out / f"{bundle.name}.png")
    return result


def _plot(points: np.ndarray, n: int, labels: np.ndarray, names: list[str], result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True, sharey=True)
    left.scatter(points[n:, 0], points[n:, 1], s=3, alpha=0.4, c="tab:orange", label="generated G(z)")
    left.scatter(points[:n, 0], points[:n, 1], s=3, alpha=0.4, c="tab:blue", label="real test images")
    left.legend(markerscale=4, fontsize=8)
    left.set_title(f"D^f, PCA of real + generated (probe acc. {result['linear_probe_real_vs_generated_accuracy']:.2f})",
                   fontsize=9)  # fmt: skip
    for k, name in enumerate(names):
        mask = labels == k
        right.scatter(points[:n][mask, 0], points[:n][mask, 1], s=3, alpha=0.5, label=name)
    right.set_title("real test images by class", fontsize=9)
    right.legend(markerscale=4, fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
