"""The ICLR 2019 sample-based rows (sec. 5): classifier IS (the Inception score formula on the data set's own
classifier) and MS-SSIM diversity, as properties that would fail if the formula, the splits or the pairing broke."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dfi_core.metrics import ms_ssim
from training.classifiers.classifier import train_classifier
from training.classifiers.config import ClassifierTrainConfig
from training.classifiers.networks import Classifier, ClassifierConfig
from training.core.torch_utils import frozen
from training.datasets import load_dataset
from training.datasets.config import DataConfig
from training.evaluation.samples import (
    classifier_inception_score,
    classifier_logits,
    evaluate_samples,
    ms_ssim_diversity,
)
from training.gan.config import gan_config
from training.gan.train import train_gan


def confident_logits(labels: torch.Tensor, classes: int = 10, margin: float = 30.0) -> torch.Tensor:
    logits = torch.zeros(len(labels), classes)
    logits[torch.arange(len(labels)), labels] = margin
    return logits


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return load_dataset("fashion-mnist", "test").batch(torch.arange(200))


def test_one_class_or_unconfident_predictions_score_one() -> None:
    # Margin 200 underflows the other classes' float32 probabilities to exactly 0 in every split (torchmetrics 1.9.0
    # gives NaN here); the score of a G that only ever draws one class must still be exactly 1.
    one_class = classifier_inception_score(confident_logits(torch.full((1000,), 3), margin=200.0))
    assert one_class == {"mean": pytest.approx(1.0, abs=1e-12), "std": pytest.approx(0.0, abs=1e-12), "splits": 10}
    unconfident = classifier_inception_score(torch.zeros(1000, 10))  # p(y|x) = p(y): KL 0 whatever p(y) is
    assert unconfident["mean"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("used", [10, 4])
def test_confident_balanced_predictions_score_the_number_of_classes_used(used: int) -> None:
    n = 100_000
    score = classifier_inception_score(confident_logits(torch.arange(n) % used))
    # One-hot p(y|x) ⇒ score = exp(H(p(y))) of each split's label histogram; after the random permutation a split of
    # m = 10,000 holds a multinomial histogram, whose entropy falls short of log(used) by ≈ (used − 1) / (2m) nats,
    # i.e. 10 → ≈ 9.9955; the other classes' e^-30 probabilities add < 1e-11. Hence rel 2e-3, not exact.
    assert score["mean"] == pytest.approx(used, rel=2e-3)
    assert score["mean"] < used  # never above the number of classes used
    assert 0 < score["std"] < 0.05 * used


def test_agrees_with_torchmetrics_inception_score_on_ordinary_logits() -> None:
    from torchmetrics.image.inception import InceptionScore

    logits = 3 * torch.randn(1000, 10, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features in buffer"
        torch.manual_seed(7)  # torchmetrics permutes with the global RNG; ours with a generator seeded alike
        metric = InceptionScore(feature=torch.nn.Identity(), splits=10)
        metric.update(logits)
        mean, std = metric.compute()
    ours = classifier_inception_score(logits, seed=7)
    assert 1.5 < ours["mean"] < 10
    # torchmetrics computes in float32, we in float64: agreement to float32 rounding of a sum of 10 KL terms.
    assert ours["mean"] == pytest.approx(float(mean), rel=1e-5)
    assert ours["std"] == pytest.approx(float(std), rel=1e-4)
    assert classifier_inception_score(logits, seed=8)["mean"] != ours["mean"]  # the seed picks the splits


def test_classifier_is_does_not_depend_on_the_batch_size(test_images: torch.Tensor) -> None:
    torch.manual_seed(0)
    classifier = Classifier(ClassifierConfig((1, 28, 28), 10, width=8))
    classifier.head[-1].weight.data.mul_(200)  # spread the untrained logits so the score is well above 1 (≈ 2.3)
    classifier = frozen(classifier)  # eval: batch norm uses running statistics, so batches cannot interact
    scores = [classifier_inception_score(classifier_logits(classifier, test_images, batch=b)) for b in (1, 7, 200)]
    assert scores[0]["mean"] > 2.0
    # The permutation depends on (n, seed) only; what changes with the batch is the float32 accumulation order of the
    # conv / linear kernels (their blocking depends on the batch shape): measured ≤ 7e-6 on logits of spread ≈ 2.7,
    # ~1e-6 relative. The score is a smooth function of the logits, so it moves by the same order (measured 2e-8
    # relative): rel 1e-5 leaves room for other CPUs' kernels without hiding a real batch effect (train-mode
    # batch norm would move it by far more).
    for score in scores[1:]:
        assert score["mean"] == pytest.approx(scores[0]["mean"], rel=1e-5)
        assert score["std"] == pytest.approx(scores[0]["std"], rel=1e-4)


def test_ms_ssim_diversity_of_identical_images_is_one_and_of_real_images_lower(test_images: torch.Tensor) -> None:
    identical = ms_ssim_diversity(test_images[:1].repeat(8, 1, 1, 1), pairs=20)
    assert identical["mean"] == pytest.approx(1.0, abs=1e-6) and identical["pairs"] == 20
    real = ms_ssim_diversity(test_images[:100], pairs=100)
    assert 0.0 < real["mean"] < 0.5 and real["std"] > 0
    collapsed = ms_ssim_diversity(test_images[:2].repeat(50, 1, 1, 1), pairs=100)  # half the pairs are identical
    assert real["mean"] < collapsed["mean"] < 1.0
    assert ms_ssim_diversity(test_images[:100], pairs=100) == real  # seeded
    assert ms_ssim_diversity(test_images[:100], pairs=100, seed=1)["mean"] != real["mean"]


def test_ms_ssim_diversity_never_pairs_an_image_with_itself(test_images: torch.Tensor) -> None:
    # Two distinct images: every pair must be (0, 1) or (1, 0), so the mean is their MS-SSIM (a self-pair would add 1s).
    pair = test_images[:2].numpy()
    expected = float(ms_ssim(pair[:1], pair[1:])[0])
    assert expected < 0.9
    assert ms_ssim_diversity(pair, pairs=30)["mean"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        ms_ssim_diversity(pair[:1])


def test_evaluate_samples_reports_the_sample_scores(tmp_path: Path) -> None:
    config = gan_config(DataConfig("fashion-mnist"), (1, 28, 28), "dcgan", z_dim=8, g_width=8, d_width=8,
                        feature_dim=16, steps=2, batch_size=16, sample_every=2, device="cpu")  # fmt: skip
    gan = train_gan(config, tmp_path / "gan", quiet=True)
    cls, _ = train_classifier(
        ClassifierTrainConfig(DataConfig("fashion-mnist"), ClassifierConfig((1, 28, 28), 10, width=8), steps=5,
                              batch_size=16, device="cpu"),
        tmp_path / "cls", quiet=True,
    )  # fmt: skip
    result = evaluate_samples(gan, cls, n=100, device="cpu", pairs=20)
    for key in ("fd_samples_vs_test", "fd_train_vs_test", "sample_class_histogram", "n_samples", "n_real_test"):
        assert key in result  # the FD keys stay
    assert sum(result["sample_class_histogram"]) == 100
    for key in ("classifier_is", "classifier_is_real"):
        assert set(result[key]) == {"mean", "std", "splits"} and result[key]["splits"] == 10
        assert 1.0 <= result[key]["mean"] <= 10.0 and math.isfinite(result[key]["std"])
    for key in ("ms_ssim_diversity", "ms_ssim_diversity_real"):
        assert set(result[key]) == {"mean", "std", "pairs"} and result[key]["pairs"] == 20
        assert 0.0 < result[key]["mean"] <= 1.0
    assert np.isfinite(result["fd_samples_vs_test"])
