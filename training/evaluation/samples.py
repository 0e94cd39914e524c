"""Sample quality of a trained GAN: the Fréchet distance of its samples to real test images in the
data set's own classifier feature space (the domain FD the issues call for; FID needs Inception weights), and the
two sample-based scores the ICLR 2019 paper compares against (sec. 5, Table 3):

- classifier IS: the Inception score of Salimans et al. 2016, exp(E_x KL(p(y|x) ‖ p(y))), over 10 splits, with the
  data set's classifier in place of Inception (whose weights cannot be fetched here). Not comparable to Inception
  scores of other work: only to other classifier IS numbers of the same classifier. Higher = more confident and
  more varied class predictions; at most the number of classes. `classifier_is_real` (real test images) is the
  reference a perfect generator would reach.
- MS-SSIM diversity (Odena et al. 2017): mean MS-SSIM over random pairs of distinct samples, with
  dfi_core.metrics.ms_ssim (28 px images: 2 scales, see there). Lower = more diverse; a collapsed G scores near 1.
  `ms_ssim_diversity_real` (pairs of real test images) is the reference.
"""

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
from training.gan.config import GANConfig
from training.gan.model import load_generator_and_discriminator


@torch.no_grad()
def classifier_features(classifier: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> np.ndarray:
    return torch.cat([classifier.features(images[i : i + batch]) for i in range(0, len(images), batch)]).cpu().numpy()


@torch.no_grad()
def classifier_logits(classifier: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([classifier(images[i : i + batch]) for i in range(0, len(images), batch)])


IS_SPLITS = 10  # Salimans et al. 2016's protocol (and torchmetrics' default)
MS_SSIM_PAIRS = 1000


def classifier_inception_score(logits: torch.Tensor, splits: int = IS_SPLITS, seed: int = 0) -> dict[str, Any]:
    """The Inception score formula on a classifier's logits [N, C]: exp(mean_x KL(p(y|x) ‖ p(y))) on each of
    `splits` parts of a seeded random permutation (p(y) = the part's mean prediction); {"mean", "std", "splits"},
    std over the parts with n − 1 (as torch.std and torchmetrics). 1 ≤ score ≤ C.

    Written out rather than torchmetrics' InceptionScore (1.9.0; it does take a custom feature module, e.g. an
    nn.Identity on logits) because its compute() (a) returns NaN when a class's probability underflows to 0 in a
    whole part — 0·(log 0 − log 0) instead of 0, which a confident classifier on a mode-collapsed G produces, the very
    case the score is for — and (b) shuffles with torch's global, unseeded RNG. Otherwise the same arithmetic: on
    ordinary logits the two agree (tests/training/evaluation/test_sample_scores.py)."""
    logits = torch.as_tensor(logits).detach().to("cpu", torch.float64)
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"need [N ≥ {splits}, classes] logits, got shape {tuple(logits.shape)}")
    logits = logits[torch.randperm(len(logits), generator=torch.Generator().manual_seed(seed))]
    scores = []
    for part in logits.tensor_split(splits):  # sizes differ by at most 1 (torch.chunk can return fewer parts)
        p, log_p = part.softmax(1), part.log_softmax(1)
        log_marginal = p.mean(0, keepdim=True).log()  # finite wherever p > 0
        kl = torch.where(p > 0, p * (log_p - log_marginal), torch.zeros_like(p)).sum(1)
        scores.append(kl.mean().exp())
    stacked = torch.stack(scores)
    return {"mean": float(stacked.mean()), "std": float(stacked.std()), "splits": splits}


def ms_ssim_diversity(images: torch.Tensor | np.ndarray, pairs: int = MS_SSIM_PAIRS, seed: int = 0) -> dict[str, Any]:
    """Mean MS-SSIM over `pairs` random pairs (i, j), i ≠ j, of `images` [N ≥ 2, C, H, W] in the model range [-1, 1]
    (dfi_core.metrics.ms_ssim maps to [0, 1]); pairs drawn with replacement from a numpy generator seeded with `seed`.
    {"mean", "std" (over pairs, n − 1), "pairs"}. Identical images give 1; lower = more diverse."""
    from dfi_core.metrics import ms_ssim

    images = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if len(images) < 2:
        raise ValueError(f"need at least 2 images for pairs, got {len(images)}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(images), pairs)
    second = (first + rng.integers(1, len(images), pairs)) % len(images)  # uniform over the other N − 1 images
    values = ms_ssim(images[first], images[second])
    std = float(values.std(ddof=1)) if pairs > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "pairs": pairs}


class SampleFD:
    """FD of a generator's samples to the real test split, for the curve along one training run
    (training/gan/convergence.py: fixed z, so the curve moves with G, not with the draw)."""

    def __init__(self, classifier_path: str | Path, data_name: str, data_dir: str | None, z_dim: int, n: int,
                 seed: int, device: torch.device) -> None:  # fmt: skip
        self.classifier, cls_config = load_classifier(classifier_path, device)
        if cls_config.data.name != data_name:
            raise ValueError(f"fd classifier was trained on {cls_config.data.name!r}, the GAN on {data_name!r}")
        real = load_dataset(data_name, "test", data_dir)
        self.n = min(n, len(real))
        self.real = classifier_features(self.classifier, real.batch(torch.arange(self.n), device))
        # Fixed z from their own generator: the training rng is untouched, so scoring never changes training.
        self.z = torch.randn(self.n, z_dim, generator=torch.Generator().manual_seed(seed + 2)).to(device)

    @torch.no_grad()
    def __call__(self, G: torch.nn.Module) -> float:
        was_training = G.training
        G.eval()  # the generator as DFI and the bundle use it
        samples = torch.cat([G(self.z[i : i + 500]) for i in range(0, self.n, 500)])
        G.train(was_training)
        return frechet_distance_of_features(self.real, classifier_features(self.classifier, samples))


def sample_fd_for(config: GANConfig) -> SampleFD:
    """The scorer of a GAN run's `fd_classifier` (pass it to train_gan / resume_gan as `sample_fd_for`)."""
    assert config.fd_classifier is not None
    return SampleFD(config.fd_classifier, config.data.name, config.data.data_dir, config.generator.z_dim,
                    config.fd_samples, config.seed, resolve_device(config.device))  # fmt: skip


@torch.no_grad()
def evaluate_samples(
    checkpoint: str | Path,
    classifier_path: str | Path,
    n: int = 10_000,
    seed: int = 0,
    device: str = "auto",
    pairs: int = MS_SSIM_PAIRS,
) -> dict[str, Any]:
    """Sample FD (with its train-vs-test floor), classifier IS and MS-SSIM diversity of n samples, each next to the
    same score of real test images. The new scores draw from generators of their own, so the FD keys are the
    numbers they were before them."""
    dev = resolve_device(device)
    G, _, config = load_generator_and_discriminator(checkpoint, str(dev))
    classifier, cls_config = load_classifier(classifier_path, dev)
    if config.data.name != cls_config.data.name:
        raise ValueError(f"GAN trained on {config.data.name!r} but classifier on {cls_config.data.name!r}")
    real = load_dataset(config.data.name, "test", config.data.data_dir)
    real_index = torch.arange(min(n, len(real)))
    real_images = real.batch(real_index, dev)
    real_features = classifier_features(classifier, real_images)
    rng = torch.Generator().manual_seed(seed)
    samples = torch.cat([
        G(torch.randn(min(500, n - i), config.generator.z_dim, generator=rng).to(dev)) for i in range(0, n, 500)
    ])  # fmt: skip
    fake_features = classifier_features(classifier, samples)
    # Train images as a "perfect generator" reference: the FD floor for this n and this feature space.
    train = load_dataset(config.data.name, "train", config.data.data_dir)
    floor_index = torch.randperm(len(train), generator=rng)[:n]
    floor = frechet_distance_of_features(real_features, classifier_features(classifier, train.batch(floor_index, dev)))
    logits = classifier(samples)
    predicted = logits.argmax(1).cpu().numpy()
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
        "classifier_is": classifier_inception_score(logits, seed=seed),
        "classifier_is_real": classifier_inception_score(classifier_logits(classifier, real_images), seed=seed),
        "ms_ssim_diversity": ms_ssim_diversity(samples, pairs, seed=seed),
        "ms_ssim_diversity_real": ms_ssim_diversity(real_images, pairs, seed=seed),
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
