"""dfi_core.per_class (the flag rule, FD at one n per class, the fixed report) and `evaluate gan-metric`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from dfi_core.per_class import FLAG_K, MIN_CLASS_N, flag_classes, frechet_distance, per_class_report
from training.evaluation.fd import frechet_distance_of_features

BUNDLE = Path(__file__).resolve().parents[3] / "models" / "fashion-mnist"
NAMES = [f"c{i}" for i in range(10)]


@pytest.mark.parametrize("dim", [1, 10, 40])
def test_numpy_fd_matches_the_scipy_sqrtm_version(dim: int) -> None:
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(60, dim)) @ rng.normal(size=(dim, dim))
    b = 0.5 + rng.normal(size=(50, dim)) * 1.3
    assert frechet_distance(a, b) == pytest.approx(frechet_distance_of_features(a, b), rel=1e-6, abs=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_a_mean_and_std_rule_cannot_flag_ten_classes_but_the_robust_one_does() -> None:
    # One class 3 dB below nine that spread ±0.3 dB: its ordinary z-score is bounded by (n−1)/√n = 2.85 for n = 10,
    # so mean − 3σ never flags it; the median/MAD z is far below −k.
    means = dict(zip(NAMES, [17.0, 17.3, 16.8, 17.1, 16.9, 17.2, 16.7, 17.0, 17.1, 14.0], strict=True))
    values = np.array(list(means.values()))
    assert (values[-1] - values.mean()) / values.std(ddof=1) > -3
    flag = flag_classes(means, "psnr")
    assert flag["flagged"] == ["c9"] and flag["z"]["c9"] < -FLAG_K and flag["k"] == FLAG_K


def test_four_dropped_classes_of_ten_do_not_mask_each_other() -> None:
    means = dict(zip(NAMES, [17.0, 17.3, 16.8, 17.1, 16.9, 17.2, 13.0, 13.5, 12.8, 14.0], strict=True))
    assert sorted(flag_classes(means, "psnr")["flagged"]) == ["c6", "c7", "c8", "c9"]


def test_the_floor_keeps_tiny_differences_unflagged_and_fd_flags_upwards() -> None:
    means = dict(zip(NAMES, [17.0] * 9 + [16.5], strict=True))  # MAD 0: only the 0.25 dB floor scales z
    flag = flag_classes(means, "psnr")
    assert flag["scale"] == 0.25 and flag["flagged"] == []  # 0.5 dB below: z = −2, not a dropped mode
    fds = dict(zip(NAMES, [1.0, 1.1, 0.9, 1.2, 1.0, 0.8, 1.1, 1.0, 0.9, 5.0], strict=True))
    assert flag_classes(fds, "fd")["flagged"] == ["c9"]  # lower is better for FD


def test_a_reference_removes_the_classes_own_difficulty() -> None:
    # Class c0 is hard for every G (2 dB below), c1 lost by this G: alone the rule flags c0; against a reference
    # G with the same class difficulties it flags only c1.
    ref = dict(zip(NAMES, [15.0] + [17.0] * 9, strict=True))
    this = {**{c: v - 0.2 + 0.05 * i for i, (c, v) in enumerate(ref.items())}, "c1": 14.8}
    assert sorted(flag_classes(this, "psnr")["flagged"]) == ["c0", "c1"]
    assert flag_classes(this, "psnr", reference=ref)["flagged"] == ["c1"]


def test_the_report_has_fixed_keys_one_fd_n_and_skips_small_classes() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), [30, 25, 40, 35, 28, 33, 31, 26, 29, MIN_CLASS_N - 5])
    rng.shuffle(labels)
    psnr = 17 + rng.normal(0, 0.5, len(labels)) - 4.0 * (labels == 3)
    real, fake = rng.normal(size=(len(labels), 4)), rng.normal(size=(len(labels), 4))
    report = per_class_report({"psnr": psnr}, labels, NAMES, real, fake, fd_features="test")
    assert set(report) == {"classes", "by_class", "fd", "rule", "flags", "flagged", "flagged_by", "reference"}
    assert report["fd"] == {"n_per_class": 25, "features": "test"}  # the smallest class with ≥ MIN_CLASS_N
    assert report["by_class"]["c9"]["fd"] is None and "c9" not in report["flags"]["psnr"]["z"]
    assert report["flagged"] == ["c3"] and report["flagged_by"]["psnr"] == ["c3"]
    # FD of a class uses its first n images in input order (same n for all): recompute c0 by hand.
    first = np.flatnonzero(labels == 0)[:25]
    assert report["by_class"]["c0"]["fd"] == pytest.approx(frechet_distance(real[first], fake[first]))
    # Exact, whatever order the per-image values were gathered in chunks: a permutation that keeps each class's
    # order (interleaving classes differently) gives the same numbers.
    order = np.argsort(labels, kind="stable")
    again = per_class_report({"psnr": psnr[order]}, labels[order], NAMES, real[order], fake[order], fd_features="test")
    assert again["by_class"] == report["by_class"] and again["flags"] == report["flags"]  # bit for bit


def test_gan_metric_command_writes_json_md_and_bars(tmp_path: Path) -> None:
    from training.cli.evaluation import gan_metric_command

    app = typer.Typer()
    app.command()(gan_metric_command)
    result = CliRunner().invoke(app, ["--bundle", str(BUNDLE), "--n", "300", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "fashion-mnist-per-class.json").read_text())
    report = data["per_class"]
    assert data["n"] == 300 and report["fd"]["features"] == "classifier.onnx logits"
    assert sum(e["n"] for e in report["by_class"].values()) == 300
    ns = {e["n"] for e in report["by_class"].values()}
    assert report["fd"]["n_per_class"] == min(ns)
    for entry in report["by_class"].values():
        assert 8 < entry["psnr"]["mean"] < 30 and 0 < entry["ssim"]["mean"] < 1 and entry["fd"] >= 0
        assert 0 <= entry["class_consistency"]["mean"] <= 1
    assert (tmp_path / "fashion-mnist-per-class.png").stat().st_size > 0
    assert "Rule:" in (tmp_path / "fashion-mnist-per-class.md").read_text()
    bad = CliRunner().invoke(app, ["--bundle", str(BUNDLE), "--method", "enc", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "dfi or dfi_opt" in bad.output
