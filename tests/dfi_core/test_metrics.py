"""dfi_core.metrics: the numbers the service's jobs and the eval CLI report, checked against references.

Collects without torch (the service's slim image): the tests of torchmetrics-backed metrics skip there."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dfi_core import metrics

RNG = np.random.default_rng(0)
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchmetrics") is None,
    reason="SSIM / MS-SSIM and the torchmetrics references need torch and torchmetrics",
)


def images(n: int, side: int = 28, channels: int = 1) -> np.ndarray:
    return (RNG.random((n, channels, side, side)) * 2 - 1).astype(np.float32)


@needs_torch
def test_psnr_matches_torchmetrics_per_image() -> None:
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = images(6), images(6)
    expected = peak_signal_noise_ratio(torch.from_numpy((a + 1) / 2), torch.from_numpy((b + 1) / 2), data_range=1.0,
                                       reduction="none", dim=(1, 2, 3)).numpy()  # fmt: skip
    np.testing.assert_allclose(metrics.psnr(a, b), expected, rtol=1e-5)


def test_psnr_of_a_known_error() -> None:
    # A uniform error of 0.1 on [0, 1] images (0.2 in model range): MSE 0.01 → exactly 20 dB.
    a = np.zeros((1, 1, 28, 28), np.float32)
    assert metrics.psnr(a + 0.2, a)[0] == pytest.approx(20.0, abs=1e-4)


@needs_torch
def test_ssim_is_one_for_identical_images_and_matches_torchmetrics() -> None:
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = images(4), images(4)
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, atol=1e-6)
    expected = structural_similarity_index_measure(torch.from_numpy((a + 1) / 2), torch.from_numpy((b + 1) / 2),
                                                   data_range=1.0, reduction="none").numpy()  # fmt: skip
    np.testing.assert_allclose(metrics.ssim(a, b), expected, rtol=1e-5)


@pytest.mark.parametrize(("side", "scales"), [(28, 2), (32, 2), (64, 3), (128, 4), (256, 5)])
def test_ms_ssim_uses_the_scales_that_fit(side: int, scales: int) -> None:
    assert metrics.ms_ssim_scales(side) == scales


@needs_torch
def test_ms_ssim_is_one_for_identical_images_and_drops_with_noise() -> None:
    a = images(3, side=64, channels=3)
    np.testing.assert_allclose(metrics.ms_ssim(a, a), 1.0, atol=1e-5)
    noisy = np.clip(a + 0.3 * RNG.standard_normal(a.shape), -1, 1).astype(np.float32)
    assert (metrics.ms_ssim(noisy, a) < 0.99).all()


@needs_torch
def test_batch_composition_does_not_change_per_image_values() -> None:
    # Each image's score is its own: scoring 8 together equals scoring them 3 + 5 (no batch statistics leak).
    a, b = images(8), images(8)
    for metric in (metrics.psnr, metrics.ssim, metrics.ms_ssim):
        together = metric(a, b)
        split = np.concatenate([metric(a[:3], b[:3]), metric(a[3:], b[3:])])
        np.testing.assert_allclose(together, split, rtol=1e-6, err_msg=metric.__name__)


def test_class_consistency_and_summary() -> None:
    logits = np.array([[2.0, 0.1], [0.1, 3.0], [5.0, 0.0]])
    np.testing.assert_array_equal(metrics.class_consistency(logits, np.array([0, 1, 1])), [1.0, 1.0, 0.0])
    summary = metrics.summarize(np.array([1.0, 2.0, 3.0]))
    assert summary == {"mean": 2.0, "std": 1.0, "n": 3}


def test_unavailable_metrics_say_what_is_missing() -> None:
    assert set(metrics.UNAVAILABLE) == {"lpips", "fid", "inception_score"}
    assert "weights-inception-2015-12-05" in metrics.UNAVAILABLE["fid"]


@needs_torch
def test_the_table_names_every_image_metric_the_service_offers() -> None:
    # The service's job metrics are the table's image metrics plus the two of other inputs.
    assert set(metrics.METRICS) == {"psnr", "ssim", "ms_ssim"} | {"class_consistency", "latent_norm"}
    assert {"psnr", "ssim", "ms_ssim"} <= set(metrics.IMAGE_METRICS)
    a, b = images(4), images(4)
    scored = metrics.score_images(a, b, ["ssim", "psnr"])
    assert list(scored) == ["ssim", "psnr"]  # the order asked
    np.testing.assert_array_equal(scored["psnr"], metrics.psnr(a, b))
    np.testing.assert_array_equal(scored["ssim"], metrics.ssim(a, b))
    with pytest.raises(ValueError, match="unknown image metric"):
        metrics.score_images(a, b, ["class_consistency"])  # needs logits and labels, not image pairs


def test_mse_is_on_unit_images_and_latent_norm_per_row() -> None:
    a = np.zeros((2, 1, 4, 4), np.float32)
    np.testing.assert_allclose(metrics.mse(a + 0.2, a), 0.01)  # 0.2 in model range = 0.1 on [0, 1]
    np.testing.assert_allclose(metrics.latent_norm(np.array([[3.0, 4.0], [0.0, 1.0]])), [5.0, 1.0])
