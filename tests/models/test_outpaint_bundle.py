"""The shipped Fashion-MNIST bundle's optional SCGAN `outpaint` graph: manifest entry, and ONNX Runtime vs the torch
module rebuilt from the bundle's own scgan.safetensors (≤ 1e-4 at batch sizes 1 and 64)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfi_core.bundle import OutpaintEntry, load_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "fashion-mnist"


@pytest.fixture(scope="module")
def bundle():
    if not (BUNDLE / "manifest.json").is_file():
        pytest.skip("models/fashion-mnist is not present")
    loaded = load_bundle(BUNDLE)
    if loaded.manifest.graphs.outpaint is None:
        pytest.skip("models/fashion-mnist has no outpaint graph")
    return loaded


def test_outpaint_entry(bundle) -> None:
    entry = bundle.manifest.graphs.outpaint
    assert isinstance(entry, OutpaintEntry)
    assert entry.file == "outpaint.onnx" and entry.opset == 17
    assert [(i.name, i.shape) for i in entry.inputs] == [("patch", ["batch", 1, 14, 14]), ("z_edge", ["batch", 32])]
    assert (entry.output.name, entry.output.shape) == ("image", ["batch", 1, 28, 28])
    assert (entry.patch.top, entry.patch.left, entry.patch.height, entry.patch.width) == (7, 7, 14, 14)
    assert (entry.z_center_size, entry.z_edge_size) == (32, 32)
    assert "scgan.safetensors" in bundle.manifest.files
    assert any(c.startswith("python -m training export outpaint") for c in bundle.manifest.training.commands)


def test_outpaint_matches_torch(bundle) -> None:
    torch.set_num_threads(1)
    from training.scgan import crop, load_outpainter
    from training.scgan_export import PARITY_TOLERANCE, onnx_parity, parity_inputs

    outpainter, config = load_outpainter(bundle.path("scgan.safetensors"))
    graph = bundle.open_graph("outpaint", providers=["CPUExecutionProvider"])
    patch, z_edge = parity_inputs(config, n=64)
    errors = onnx_parity(graph, outpainter, patch, z_edge, batch_sizes=(1, 64))
    assert max(errors.values()) <= PARITY_TOLERANCE, errors
    try:  # real test patches too, when the data set is installed
        from training.datasets import load_dataset

        real = crop(load_dataset("fashion-mnist", "test").batch(torch.arange(64)), config).contiguous()
    except Exception:  # noqa: BLE001 — the data set is optional for this test
        return
    errors = onnx_parity(graph, outpainter, real, z_edge, batch_sizes=(1, 64))
    assert max(errors.values()) <= PARITY_TOLERANCE, errors
    with torch.no_grad():
        image = outpainter(real, z_edge)
    assert image.shape == (64, 1, 28, 28) and image.abs().max() <= 1
