"""Every bundle committed under models/: checksums verify and ONNX Runtime matches torch (≤ 1e-4, the DFI
issue's contract) on 64 inputs at batch sizes 1 and 64, rebuilt from the bundle's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfi_core.bundle import load_bundle
from training.build_bundle import PARITY_TOLERANCE, bundle_parity

MODELS = Path(__file__).resolve().parents[2] / "models"
BUNDLES = sorted(p.parent for p in MODELS.glob("*/manifest.json"))


@pytest.mark.parametrize("folder", BUNDLES, ids=[p.name for p in BUNDLES])
def test_shipped_bundle_verifies_and_matches_torch(folder: Path) -> None:
    bundle = load_bundle(folder)
    assert bundle.manifest.metrics["test_images"] >= 500  # 1000 Fashion-MNIST test images; all 688 of emoji
    errors = bundle_parity(folder, n=64, batch_sizes=(1, 64))
    assert set(errors) == {"invert", "generator", "discriminator_features"}
    assert max(errors.values()) <= PARITY_TOLERANCE, errors
