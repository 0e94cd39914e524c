"""Every bundle committed under models/: checksums verify and ONNX Runtime matches torch (≤ 1e-4, the DFI
issue's contract) on 64 inputs at batch sizes 1 and 64, rebuilt from the bundle's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfi_core.bundle import load_bundle
from training.export.bundle import PARITY_TOLERANCE, bundle_parity

MODELS = Path(__file__).resolve().parents[2] / "models"
BUNDLES = sorted(p.parent for p in MODELS.glob("*/manifest.json"))


@pytest.mark.parametrize("folder", BUNDLES, ids=[p.name for p in BUNDLES])
def test_shipped_bundle_verifies_and_matches_torch(folder: Path) -> None:
    bundle = load_bundle(folder)
    assert bundle.manifest.metrics["test_images"] >= 500  # 1000 Fashion-MNIST test images; all 688 of emoji
    errors = bundle_parity(folder, n=64, batch_sizes=(1, 64))
    assert set(errors) == {"invert", "generator", "discriminator_features"}
    assert max(errors.values()) <= PARITY_TOLERANCE, errors


@pytest.mark.parametrize("folder", BUNDLES, ids=[p.name for p in BUNDLES])
def test_shipped_bundle_stores_the_connection_network_once(folder: Path) -> None:
    """invert.onnx (D^f then CN) reads CN's weights from inverter.safetensors (training/export/shared_weights.py)
    instead of embedding a second copy, so it is about as large as the D^f graph alone, not D^f + CN."""
    from safetensors import safe_open

    bundle = load_bundle(folder)
    shared = bundle.manifest.exporter.shared_weights
    assert shared.get("invert.onnx") == "inverter.safetensors"
    assert shared.get("generator.onnx") == "generator.safetensors"
    with safe_open(str(folder / "inverter.safetensors"), framework="np") as handle:
        cn_bytes = sum(handle.get_tensor(k).nbytes for k in handle.keys() if ".connection_network." in k)  # noqa: SIM118
    features_size = (folder / "discriminator_features.onnx").stat().st_size
    assert (folder / "invert.onnx").stat().st_size < features_size + cn_bytes / 10


@pytest.mark.parametrize("folder", BUNDLES, ids=[p.name for p in BUNDLES])
def test_shipped_bundle_carries_its_classifier_and_directions(folder: Path) -> None:
    import numpy as np

    from dfi_core.datasets import load_split
    from dfi_core.preprocessing import to_model_range

    bundle = load_bundle(folder)
    manifest = bundle.manifest
    assert manifest.graphs.classifier is not None and len(manifest.dataset.class_names) == 10
    assert len(manifest.directions) >= 6
    for name, direction in manifest.directions.items():
        vector = np.load(bundle.path(direction.file), allow_pickle=False)
        assert vector.shape == (manifest.latent.size,) and vector.dtype == np.float32, name
        assert np.isfinite(vector).all() and np.linalg.norm(vector) > 0.1, name
        if name.startswith(("pca_", "sefa_")):  # unsupervised: no labelled sets, the component index instead
            assert direction.counts["component"] >= 0 and ("PCA" in direction.method or "SeFa" in direction.method)
        else:
            assert direction.counts["with"] > 0 and direction.counts["without"] > 0
    for prefix in ("svm_", "pca_", "sefa_"):  # the editing issue's comparison ships with every bundle
        assert any(name.startswith(prefix) for name in manifest.directions), prefix
    # The shipped classifier still classifies the real test split (Fashion-MNIST 0.898, emoji 0.814 at export).
    data = load_split(manifest.dataset.name, "test")
    logits = bundle.open_graph("classifier", providers=["CPUExecutionProvider"])(to_model_range(data.images[:500]))
    assert (logits.argmax(1) == data.labels[:500]).mean() > 0.75
