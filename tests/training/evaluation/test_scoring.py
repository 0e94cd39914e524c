"""The one scoring core (training/evaluation/scoring.py): batches accumulate into the one summary format, and the
flat schemas of the files written before it come back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dfi_core import metrics
from training.evaluation.scoring import Scores, flatten, score_reconstructions

RNG = np.random.default_rng(0)
N = 12
TARGETS = (RNG.random((N, 1, 28, 28)) * 2 - 1).astype(np.float32)
RECON = np.clip(TARGETS + 0.3 * RNG.standard_normal(TARGETS.shape), -1, 1).astype(np.float32)
LOGITS = RNG.standard_normal((N, 10))
LABELS = RNG.integers(0, 10, N)
NAMES = ("psnr", "ssim", "ms_ssim", "mse")


def summary_in_batches(batch: int) -> dict[str, dict]:
    scores = Scores(NAMES)
    for start in range(0, N, batch):
        scores.add_images(RECON[start : start + batch], TARGETS[start : start + batch])
        scores.add_class_consistency(LOGITS[start : start + batch], LABELS[start : start + batch])
    return scores.summary()


WHOLE = summary_in_batches(N)


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(min_value=1, max_value=N))
def test_batch_size_does_not_change_the_summary(batch: int) -> None:
    got = summary_in_batches(batch)
    assert list(got) == [*NAMES, "class_consistency"]
    for name, summary in got.items():
        assert summary["n"] == WHOLE[name]["n"] == N
        if name in ("ssim", "ms_ssim"):
            # torchmetrics' SSIMs are float32 convolutions over the batch tensor; another batch shape may take
            # another kernel path, whose summation order moves a value by float32 rounding (~1e-7 relative).
            assert summary["mean"] == pytest.approx(WHOLE[name]["mean"], rel=1e-6)
            assert summary["std"] == pytest.approx(WHOLE[name]["std"], rel=1e-5)
        else:
            # PSNR / MSE are float64 reductions over each image's own pixels and class-consistency an argmax per
            # row: each image's value does not depend on its batch, and the summary reduces the same values in the
            # same order, so it is bit-identical.
            assert summary == WHOLE[name], name


def test_summaries_are_the_dfi_core_format_of_the_per_image_values() -> None:
    assert WHOLE["psnr"] == metrics.summarize(metrics.psnr(RECON, TARGETS))
    assert WHOLE["class_consistency"] == metrics.summarize(metrics.class_consistency(LOGITS, LABELS))
    # the MSE behind PSNR: 10·log10(1 / MSE) per image
    np.testing.assert_allclose(10 * np.log10(1 / metrics.mse(RECON, TARGETS)), metrics.psnr(RECON, TARGETS))


def test_torch_tensors_score_as_their_arrays() -> None:
    scores = Scores(("psnr", "ssim"))
    scores.add_images(torch.from_numpy(RECON).requires_grad_(), torch.from_numpy(TARGETS))
    np.testing.assert_array_equal(scores.values("psnr"), metrics.psnr(RECON, TARGETS))
    np.testing.assert_array_equal(scores.values("ssim"), metrics.ssim(RECON, TARGETS))


def test_score_reconstructions_passes_offsets_and_returns_every_output() -> None:
    offsets = []

    def reconstruct(x: np.ndarray, offset: int) -> np.ndarray:
        offsets.append(offset)
        return RECON[offset - 100 : offset - 100 + len(x)]

    scores, outputs = score_reconstructions(reconstruct, TARGETS, LABELS, lambda x: LOGITS[: len(x)], ("psnr",),
                                            batch=5, offset=100)  # fmt: skip
    assert offsets == [100, 105, 110]
    np.testing.assert_array_equal(outputs, RECON)
    np.testing.assert_array_equal(scores.values("psnr"), metrics.psnr(RECON, TARGETS))
    assert "class_consistency" in scores and len(scores.values("class_consistency")) == N


def test_unknown_image_metrics_fail_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown image metric\(s\) \['lpips'\]"):
        Scores(("psnr", "lpips")).add_images(RECON, TARGETS)


def test_flatten_writes_the_schemas_that_predate_the_one_format() -> None:
    psnr, ssim = {"mean": 17.0, "std": 2.7, "n": 5}, {"mean": 0.69, "std": 0.16, "n": 5}
    consistency = {"mean": 0.8, "std": 0.4, "n": 5}
    result = {"n": 5, "psnr": psnr, "ssim": ssim, "class_consistency": consistency, "fd": 34.0,
              "refined": {"steps": 50, "method": "adam", "psnr": psnr}}  # fmt: skip
    # the manifest's metrics.dfi / docs/dfi/*-scores.json: no std for class-consistency
    assert flatten(result, stds=("psnr", "ssim")) == {
        "n": 5, "psnr": 17.0, "psnr_std": 2.7, "ssim": 0.69, "ssim_std": 0.16, "class_consistency": 0.8, "fd": 34.0,
        "refined": {"steps": 50, "method": "adam", "psnr": 17.0, "psnr_std": 2.7},
    }  # fmt: skip
    # reconstruction.json: <name>_mean and <name>_std for every metric
    assert flatten({"n": 5, "mse": psnr}, mean="{}_mean") == {"n": 5, "mse_mean": 17.0, "mse_std": 2.7}
