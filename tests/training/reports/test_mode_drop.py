"""The mode-drop report (training/reports/mode_drop.py) on per-class results made by the real rule
(dfi_core.per_class.per_class_report) from per-image scores with a known answer: the variant's G "never saw" coat,
so coat's reconstructions are 3 dB worse than the reference's and the classifier finds few coats in its samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dfi_core.per_class import per_class_report
from training.reports.mode_drop import study, write_report

CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def _variant(runs: Path, name: str, dropped: list[int], psnr: np.ndarray, labels: np.ndarray, counts: list[int],
             reference: dict | None) -> dict:  # fmt: skip
    (runs / name / "gan").mkdir(parents=True)
    config = {"data": {"name": "fashion-mnist", "exclude_classes": dropped}, "steps": 5000}
    (runs / name / "gan" / "config.json").write_text(json.dumps(config))
    samples = {"fd_samples_vs_test": 30.0 + 5 * len(dropped), "n_samples": 10_000, "sample_class_histogram": counts}
    (runs / name / "sample_fd.json").write_text(json.dumps(samples))
    ssim = np.clip(0.5 + (psnr - 16) / 20, 0, 1)
    report = per_class_report({"psnr": psnr, "ssim": ssim}, labels, CLASSES,
                              reference=reference["by_class"] if reference else None)  # fmt: skip
    (runs / "results").mkdir(exist_ok=True)
    result = {"n": len(labels), "per_class": report}
    (runs / "results" / f"{name}-per-class.json").write_text(json.dumps(result))
    return report


def test_the_report_finds_the_dropped_class_and_counts_recall_and_false_alarms(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 100)
    base = 16 + rng.normal(0, 0.3, 10)[labels] + rng.normal(0, 2.0, len(labels))  # classes differ in difficulty
    reference = _variant(tmp_path, "drop0", [], base, labels, [1000] * 10, None)
    worse = base + rng.normal(0, 0.1, len(labels)) - 3.0 * (labels == 4)
    counts = [1000] * 10
    counts[4] = 180  # the classifier still calls some pullovers / shirts "coat"
    _variant(tmp_path, "drop1", [4], worse, labels, counts, reference)

    result = study(tmp_path)
    assert result["reference"] == "drop0"
    row = result["variants"]["drop1"]
    assert row["dropped"] == ["coat"]
    psnr = row["detectors"]["psnr"]
    assert (psnr["flagged"], psnr["recall"], psnr["false_alarms"], psnr["dropped_ranks"]) == (
        ["coat"],
        1.0,
        [],
        {"coat": 1},
    )
    assert row["detectors"]["sample_counts"]["flagged"] == ["coat"]  # 180 < 0.5 × 1000
    assert result["variants"]["drop0"]["detectors"]["psnr"]["recall"] is None  # nothing to recall
    written = write_report(result, tmp_path, tmp_path / "docs")
    table = (tmp_path / "docs" / "mode-drop-table.md").read_text()
    assert "| drop1 | coat | 35.00 (10000) | – | – | coat 180 (1000) |" in table
    assert "1.00 · 0 false · rank 1 |" in table
    assert (tmp_path / "docs" / "mode-drop-psnr.png").stat().st_size > 5000 and len(written) == 3


def test_the_study_needs_one_reference(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(10), 20)
    _variant(tmp_path, "drop1", [4], np.full(len(labels), 16.0), labels, [100] * 10, None)
    with pytest.raises(ValueError, match="exactly one variant that left no class out"):
        study(tmp_path)
    with pytest.raises(FileNotFoundError, match="no finished variant"):
        study(tmp_path / "drop1")
