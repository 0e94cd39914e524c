"""Sample quality of a trained GAN: the Fréchet distance of its samples to real test images in the
data set's own classifier feature space (the domain FD the issues call for; FID needs Inception weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.classifiers.classifier import load_classifier
from training.core.checkpoint import read_metadata
from training.core.torch_utils import resolve_device
from training.datasets import Dataset, load_dataset
from training.evaluation.fd import frechet_distance_of_features
from training.evaluation.scoring import Scores, flatten
from training.gan.model import load_generator_and_discriminator


@torch.no_grad()
def classifier_features(classifier: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> np.ndarray:
    return torch.cat([classifier.features(images[i : i + batch]) for i in range(0, len(images), batch)]).cpu().numpy()


@torch.no_grad()
def evaluate_samples(
    checkpoint: str | Path, classifier_path: str | Path, n: int = 10_000, seed: int = 0, device: str = "auto"
) -> dict[str, Any]:
    dev = resolve_device(device)
    G, _, config = load_generator_and_discriminator(checkpoint, str(dev))
    classifier, cls_config = load_classifier(classifier_path, dev)
    if config.data.name != cls_config.data.name:
        raise ValueError(f"GAN trained on {config.data.name!r} but classifier on {cls_config.data.name!r}")
    real = load_dataset(config.data.name, "test", config.data.data_dir)
    real_index = torch.arange(min(n, len(real)))
    real_features = classifier_features(classifier, real.batch(real_index, dev))
    rng = torch.Generator().manual_seed(seed)
    samples = torch.cat([
        G(torch.randn(min(500, n - i), config.generator.z_dim, generator=rng).to(dev)) for i in range(0, n, 500)
    ])  # fmt: skip
    fake_features = classifier_features(classifier, samples)
    # Train images as a "perfect generator" reference: the FD floor for this n and this feature space.
    train = load_dataset(config.data.name, "train", config.data.data_dir)
    floor_index = torch.randperm(len(train), generator=rng)[:n]
    floor = frechet_distance_of_features(real_features, classifier_features(classifier, train.batch(floor_index, dev)))
    predicted = classifier(samples).argmax(1).cpu().numpy()
    return {
        "checkpoint": str(checkpoint),
        "data": config.data.name,
        "loss": config.loss.name,
        "checkpoint_step": read_metadata(checkpoint)["step"],
        "n_samples": n,
        "n_real_test": len(real_index),
        "seed": seed,
        "fd_samples_vs_test": frechet_distance_of_features(real_features, fake_features),
        "fd_train_vs_test": floor,
        "sample_class_histogram": np.bincount(predicted, minlength=len(real.class_names)).tolist(),
        "feature_space": f"classifier penultimate layer ({cls_config.model.feature_dim}-d) of {classifier_path}",
    }


INVERSION_METRICS = ("psnr", "ssim")  # the image metrics of the manifest (and of docs/dfi.md); + class_consistency


@torch.no_grad()
def score_inversion(
    inverter: torch.nn.Module,
    G: torch.nn.Module,
    classifier: torch.nn.Module | None,
    data: Dataset,
    n: int = 1000,
    device: str | torch.device = "cpu",
    refine_steps: int = 0,
    refine_method: str = "adam",
    batch: int = 250,
) -> dict[str, Any]:
    """The ICLR reconstruction metric on the first n unseen test images, for one inversion method:
    PSNR / SSIM (images in [0, 1], data_range 1), class-consistency (the classifier's label of G(ẑ) equals the
    true label) as summaries {"mean", "std", "n"}, and the domain FD between the reconstructions and the real
    images (classifier features). With refine_steps > 0 the same for ẑ refined by eq. 2 (key "refined").
    classifier None (a user's GAN may come with none): PSNR / SSIM only, the same numbers.
    Returns the reconstructions too; `flat_inversion_scores` gives the manifest's schema."""
    from dfi_core.refinement import refine

    n = min(n, len(data))
    scores = {"direct": Scores(INVERSION_METRICS), "refined": Scores(INVERSION_METRICS)}
    real_features, recon = [], {"direct": [], "refined": []}
    fake_features: dict[str, list[torch.Tensor]] = {"direct": [], "refined": []}
    for start in range(0, n, batch):
        index = torch.arange(start, min(start + batch, n))
        x = data.batch(index, device)
        if classifier is not None:
            real_features.append(classifier.features(x).cpu())
        z_hat = inverter(x)
        versions = {"direct": z_hat}
        if refine_steps:
            with torch.enable_grad():
                versions["refined"], _ = refine(G, x, z_hat, steps=refine_steps, method=refine_method)
        for key, z in versions.items():
            images = G(z)
            recon[key].append(images.cpu())
            scores[key].add_images(images, x)
            if classifier is not None:
                scores[key].add_class_consistency(classifier(images), data.label_batch(index, device))
                fake_features[key].append(classifier.features(images).cpu())
    result: dict[str, Any] = {"n": n}
    for key in ("direct", "refined"):
        if not recon[key]:
            continue
        summary: dict[str, Any] = scores[key].summary()
        if classifier is not None:
            summary["fd"] = frechet_distance_of_features(torch.cat(real_features).numpy(),
                                                         torch.cat(fake_features[key]).numpy())  # fmt: skip
        if key == "direct":
            result.update(summary)
        else:
            result["refined"] = {"steps": refine_steps, "method": refine_method, **summary}
    result["reconstructions"] = {k: torch.cat(v) for k, v in recon.items() if v}
    return result


def flat_inversion_scores(scores: dict[str, Any]) -> dict[str, Any]:
    """`score_inversion`'s result (without "reconstructions") in the schema of the bundle manifest's
    `metrics.dfi` / `metrics.dfi_opt` and docs/dfi/*-scores.json: psnr, psnr_std, ssim, ssim_std,
    class_consistency, fd (and "refined" alike)."""
    return flatten(scores, stds=INVERSION_METRICS)
