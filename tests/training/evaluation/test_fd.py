"""Fréchet distance math, independent of any network weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from training.evaluation.fd import feature_statistics, frechet_distance, frechet_distance_of_features


def test_identical_sets_give_zero() -> None:
    x = np.random.default_rng(0).normal(size=(500, 6))
    assert frechet_distance_of_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_closed_form_for_diagonal_gaussians() -> None:
    # For diagonal Σ the trace term is Σ_i (σ1_i − σ2_i)²: an independent closed form.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)


def test_matches_a_float64_reference_on_random_covariances() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 5)), rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 0.5
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    root1 = linalg.sqrtm(s1).real  # reference: Tr((Σ1^½ Σ2 Σ1^½)^½), the symmetric form of the same trace
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(root1 @ s2 @ root1).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="need"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
