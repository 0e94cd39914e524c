"""Sample quality of a trained GAN: the Fréchet distance of its samples to real test images in the
data set's own classifier feature space (the domain FD the issues call for; FID needs Inception weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.classifier import load_classifier
from training.datasets import load_dataset
from training.metric_fd import frechet_distance_of_features
from training.training_loop import load_generator_and_discriminator, resolve_device


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
        "steps": config.steps,
        "n_samples": n,
        "n_real_test": len(real_index),
        "seed": seed,
        "fd_samples_vs_test": frechet_distance_of_features(real_features, fake_features),
        "fd_train_vs_test": floor,
        "sample_class_histogram": np.bincount(predicted, minlength=len(real.class_names)).tolist(),
        "feature_space": f"classifier penultimate layer ({cls_config.model.feature_dim}-d) of {classifier_path}",
    }
