"""training/evaluation/robustness.py: the fish-eye and translation distortions, the LPIPS-style distance, the study's
fixed result and `python -m training evaluate robustness` (IJCV 2020 Figs. 2–5 analogue)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from training.evaluation.robustness import (
    FD_KEYS,
    ROW_KEYS,
    feature_maps,
    fisheye,
    fisheye_scale,
    lpips_style_distance,
    random_shifts,
    robustness_study,
    translate,
)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-step classifier (as tests/training/export/test_bundle.py): any conv net will do for the metrics'
    mechanics; 16-d features so FD's covariances are well estimated from 100–200 images."""
    from training.classifiers.classifier import train_classifier
    from training.classifiers.config import ClassifierTrainConfig
    from training.classifiers.networks import ClassifierConfig
    from training.datasets.config import DataConfig

    config = ClassifierTrainConfig(DataConfig("fashion-mnist"), ClassifierConfig((1, 28, 28), 10, width=8,
                                   feature_dim=16), steps=5, batch_size=16, device="cpu")  # fmt: skip
    path, _ = train_classifier(config, tmp_path_factory.mktemp("cls"), quiet=True)
    return path


def _images(n: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_zero_coefficient_and_zero_shift_are_the_identity() -> None:
    x = _images(4)
    # bilinear sampling at the pixel centres: exact up to float32 round-off of the grid (~1e-7 px)
    assert (fisheye(x, 0.0) - x).abs().max() < 1e-5
    for padding in ("raw", "reflection"):
        assert torch.equal(translate(x, torch.zeros(4, 2, dtype=torch.int64), padding), x)
    with pytest.raises(ValueError, match="≥ 0"):
        fisheye(x, -0.1)
    with pytest.raises(ValueError, match="padding"):
        translate(x, torch.zeros(4, 2, dtype=torch.int64), "zeros")


def _centroid_radius(image: torch.Tensor, centre: float) -> float:
    weight = (image[0, 0] + 1).double()  # background −1 → weight 0
    ys, xs = torch.meshgrid(torch.arange(image.shape[-2]), torch.arange(image.shape[-1]), indexing="ij")
    cy, cx = float((weight * ys).sum() / weight.sum()), float((weight * xs).sum() / weight.sum())
    return math.hypot(cy - centre, cx - centre)


def test_fisheye_keeps_the_centre_pushes_content_outwards_and_fills_corners_with_background() -> None:
    x = _images(2, size=29)  # odd side: a pixel sits exactly on the centre
    for k in (0.1, 0.3, 0.5):
        assert (fisheye(x, k)[..., 14, 14] - x[..., 14, 14]).abs().max() < 1e-5
        assert (fisheye(x, k) - x).abs().mean() > 0.05  # the rest of the image does move
    dot = torch.full((1, 1, 29, 29), -1.0)
    dot[..., 14 + 6, 14] = 1.0  # 6 px below the centre: normalised radius ρ = 12/29
    radii = [_centroid_radius(fisheye(dot, k), 14.0) for k in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)]
    assert radii[0] == pytest.approx(6.0, abs=1e-4)
    assert all(a < b for a, b in zip(radii, radii[1:], strict=False))  # magnified centre: the dot moves outwards
    # where the formula puts it: the output radius r with s r / (1 − k s² r²) = ρ, in pixels r · 29 / 2
    k, s, rho = 0.5, fisheye_scale(0.5), 12 / 29
    r = (-s + math.sqrt(s * s + 4 * k * s * s * rho * rho)) / (2 * k * s * s * rho)
    assert radii[-1] == pytest.approx(r * 29 / 2, abs=0.5)
    white = torch.ones(1, 1, 28, 28)
    out = fisheye(white, 0.5)
    assert out[0, 0, 0, 0] == -1.0 and out[0, 0, 14, 14] == pytest.approx(1.0)  # corner uncovered → background
    assert fisheye_scale(0.5) == pytest.approx(math.sqrt(3) - 1)  # edge midpoints map onto themselves


def test_translation_raw_fills_with_background_and_reflection_mirrors() -> None:
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28) / 1568 - 0.5
    shifts = torch.tensor([[2, -3], [-1, 4]])
    raw, refl = translate(x, shifts, "raw"), translate(x, shifts, "reflection")
    # image 0: down 2, left 3 — out[y, x] = in[y − 2, x + 3]
    assert torch.equal(raw[0, :, 2:, :-3], x[0, :, :-2, 3:]) and torch.equal(refl[0, :, 2:, :-3], x[0, :, :-2, 3:])
    assert (raw[0, :, :2, :] == -1).all() and (raw[0, :, :, -3:] == -1).all()
    assert torch.equal(refl[0, 0, 0, :-3], x[0, 0, 2, 3:]) and torch.equal(refl[0, 0, 1, :-3], x[0, 0, 1, 3:])
    assert torch.equal(refl[0, 0, 2:, -1], x[0, 0, :-2, -4])  # column 27 + 3 = 30 reflects to 24
    # image 1: up 1, right 4
    assert torch.equal(raw[1, :, :-1, 4:], x[1, :, 1:, :-4])
    assert (raw[1, :, -1, :] == -1).all() and (raw[1, :, :, :4] == -1).all()
    assert translate(x, shifts, "raw", background=0.25)[0, 0, 0, 0] == 0.25
    with pytest.raises(ValueError, match="reflection padding needs"):
        translate(x, torch.tensor([[28, 0], [0, 0]]), "reflection")


def test_random_shifts_are_seeded_uniform_in_the_square() -> None:
    a, b = random_shifts(2000, 2, seed=3), random_shifts(2000, 2, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, random_shifts(2000, 2, seed=4))
    assert a.shape == (2000, 2) and int(a.min()) == -2 and int(a.max()) == 2
    assert set(torch.unique(a).tolist()) == {-2, -1, 0, 1, 2}
    assert (random_shifts(10, 0) == 0).all()


def test_lpips_style_distance_is_bounded_zero_on_copies_and_grows_with_the_distortion(tiny_classifier: Path) -> None:
    from training.classifiers.classifier import load_classifier
    from training.datasets import load_dataset

    classifier = load_classifier(tiny_classifier)[0]
    x = load_dataset("fashion-mnist", "test").batch(torch.arange(200))
    maps = feature_maps(classifier, x)
    assert [m.shape[1:] for m in maps] == [(8, 14, 14), (16, 7, 7)]
    assert float(lpips_style_distance(maps, maps).abs().max()) == 0.0
    with torch.no_grad():
        means = [float(lpips_style_distance(maps, feature_maps(classifier, fisheye(x, k))).mean())
                 for k in (0.1, 0.2, 0.3, 0.4, 0.5)]  # fmt: skip
        flipped = lpips_style_distance(maps, feature_maps(classifier, -x))
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), means
    assert float(flipped.max()) <= 4 * len(maps)  # unit vectors: at most 4 per location and layer


def test_study_result_has_fixed_keys_and_the_undistorted_rows_are_zero(tiny_classifier: Path) -> None:
    from training.classifiers.classifier import load_classifier
    from training.datasets import load_dataset
    from training.evaluation.robustness import image_features

    result = robustness_study(tiny_classifier, n=200, coefficients=(0.0, 0.5), translations=(0, 3))
    assert {"data", "n", "seed", "classifier", "stand_ins", "distortions", "fd_floor", "fisheye",
            "translation"} <= set(result)  # fmt: skip
    assert result["n"] == 200 and result["data"] == "fashion-mnist"
    assert set(result["fd_floor"]) == {"halves", "disjoint"} and result["fd_floor"]["halves"]["n"] == 100
    rows = [*result["fisheye"]["rows"], *result["translation"]["raw"], *result["translation"]["reflection"]]
    assert len(rows) == 6 and all(set(ROW_KEYS) <= set(row) for row in rows)
    # FD of a feature set with itself is 0 but for sqrtm round-off, which scales with the features' spread:
    # allow 1e-8 of Tr Σ (the k = 0 copies also differ from the originals by ~1e-7 of bilinear round-off).
    real = image_features(load_classifier(tiny_classifier)[0], load_dataset("fashion-mnist", "test").batch(
        torch.arange(200)))  # fmt: skip
    tolerance = {key: 1e-8 * float(np.trace(np.cov(real[key], rowvar=False))) for key in FD_KEYS}
    identity = [result["fisheye"]["rows"][0], result["translation"]["raw"][0], result["translation"]["reflection"][0]]
    for row in identity:
        assert all(abs(row[key]) <= tolerance[key] for key in FD_KEYS), row
        assert row["lpips_style"] < 1e-9 and row["mse"] < 1e-12 and abs(row["one_minus_ssim"]) < 1e-6
    assert identity[1]["accuracy"] == identity[2]["accuracy"]
    for row in (result["fisheye"]["rows"][1], result["translation"]["raw"][1], result["translation"]["reflection"][1]):
        assert all(row[key] > 1e3 * tolerance[key] for key in FD_KEYS) and row["lpips_style"] > 0.01
        assert row["mse"] > 1e-3
    # the same shifts for both paddings: only the uncovered band differs, so the MSEs are close but not equal
    raw, refl = result["translation"]["raw"][1], result["translation"]["reflection"][1]
    assert raw["mse"] != refl["mse"] and raw["mse"] == pytest.approx(refl["mse"], rel=0.25)


def test_cli_writes_json_tables_curves_and_example_grids(tiny_classifier: Path, tmp_path: Path) -> None:
    from training.cli.app import app

    args = ["evaluate", "robustness", "--classifier", str(tiny_classifier), "--n", "100", "--out", str(tmp_path),
            "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert data["fisheye"]["coefficients"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert data["translation"]["t"] == [0, 1, 2, 3, 4, 5, 6] and len(data["translation"]["reflection"]) == 7
    table = (tmp_path / "robustness.md").read_text()
    assert "| coefficient | FD | FD pooled | LPIPS-style" in table and table.count("| reflection |") == 7
    assert "LPIPS with unit linear weights" in table
    for stem in ("fisheye", "translation"):
        assert Image.open(tmp_path / f"robustness-{stem}.png").size[0] > 600
    # Fig. 2 analogue: 6 images × 6 coefficients of 28 px tiles, 2 px padding, ×3; Fig. 4: 6 × 3
    assert Image.open(tmp_path / "robustness-fisheye-examples.png").size == (3 * (6 * 30 + 2), 3 * (6 * 30 + 2))
    assert Image.open(tmp_path / "robustness-translation-examples.png").size == (3 * (3 * 30 + 2), 3 * (6 * 30 + 2))
    bad = CliRunner().invoke(app, ["evaluate", "robustness", "--classifier", str(tiny_classifier), "--n", "1",
                                   "--out", str(tmp_path / "bad")])  # fmt: skip
    assert bad.exit_code == 2 and "4 ≤ n" in bad.output
