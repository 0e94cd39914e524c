"""Each weight stored once: ONNX graphs that point into the bundle's safetensors files compute exactly what the
self-contained graphs did, the bundle shrinks by what was shared, and the loader guards the shared files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dfi_core.bundle import BundleError, load_bundle, write_manifest
from dfi_core.onnx_graph import OnnxGraph
from tests.training.export.test_onnx import build
from training.export.onnx import check_parity, export_bundle
from training.export.shared_weights import share_bundle_weights, share_initializers

CPU = ["CPUExecutionProvider"]
SHAPE = (1, 28, 28)


def _bundle(tmp_path: Path, norm: str = "layer") -> tuple[Path, tuple]:
    """A tiny exported bundle plus the inverter's torch weights, as `training.export.bundle` ships them."""
    G, features, inverter = models = build(SHAPE, norm, ("actv7-0", "last"))
    folder = export_bundle(
        tmp_path, "tiny", G, features, inverter,
        dataset={"name": "fashion-mnist", "split": "train", "license": "test"},
        training={"commands": [], "seeds": {}, "checkpoints": []}, metrics={}, gan_config={},
    )  # fmt: skip
    save_file({k: v.contiguous() for k, v in inverter.state_dict().items()}, str(folder / "inverter.safetensors"))
    manifest = json.loads((folder / "manifest.json").read_text())
    write_manifest(folder, manifest)
    return folder, models


def _outputs(folder: Path) -> dict[str, np.ndarray]:
    bundle = load_bundle(folder)
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (5, *SHAPE)).astype(np.float32)
    z = rng.standard_normal((5, bundle.manifest.latent.size)).astype(np.float32)
    feeds = {"invert": images, "discriminator_features": images, "generator": z}
    return {g: OnnxGraph(bundle.graph_path(g), providers=CPU)(x) for g, x in feeds.items()}


@pytest.mark.parametrize("norm", ["layer", "spectral"])
def test_sharing_is_exact_and_shrinks_the_bundle(tmp_path: Path, norm: str) -> None:
    folder, (G, features, inverter) = _bundle(tmp_path, norm)
    before_sizes = {p.name: p.stat().st_size for p in folder.glob("*.onnx")}
    before = _outputs(folder)
    # The tiny model's tensors are a few KB: share everything (the default keeps tensors < 64 KiB embedded).
    saved = share_bundle_weights(folder, min_bytes=1)
    # CN's weights are stored unchanged in inverter.safetensors whatever D's norm; spectral-norm D^f weights are
    # folded (W / σ) for export and so cannot be shared, layer-norm ones can.
    assert saved["invert.onnx"] > 0 and saved["generator.onnx"] > 0
    state = features.state_dict()
    folded = sum(v.numel() * 4 for k, v in state.items() if k.endswith("parametrizations.weight.original"))
    assert (folded > 0) == (norm == "spectral")
    plain = sum(v.numel() * 4 for k, v in state.items() if v.is_floating_point()) - folded
    assert 0 < saved["discriminator_features.onnx"] <= plain  # never a folded weight; biases and plain weights
    for name, count in saved.items():
        # Each shared tensor's bytes leave the file; the external-data record that replaces it is < 200 bytes.
        assert before_sizes[name] - (folder / name).stat().st_size > count - 200 * 16, name
    after = _outputs(folder)
    for graph in before:  # the very same float32 bytes are read: bit-identical outputs
        np.testing.assert_array_equal(before[graph], after[graph], err_msg=graph)
    manifest = load_bundle(folder).manifest
    expected = {
        "invert.onnx": "inverter.safetensors",
        "generator.onnx": "generator.safetensors",
        "discriminator_features.onnx": "inverter.safetensors",
    }
    assert manifest.exporter.shared_weights == expected
    assert max(check_parity(folder, G, features, inverter, n=8).values()) <= 1e-4


def test_sharing_twice_changes_nothing(tmp_path: Path) -> None:
    folder, _ = _bundle(tmp_path)
    share_bundle_weights(folder, min_bytes=1)
    files = {p.name: p.read_bytes() for p in folder.glob("*.onnx")}
    assert share_bundle_weights(folder, min_bytes=1) == dict.fromkeys(
        ["invert.onnx", "discriminator_features.onnx", "generator.onnx"], 0
    )
    assert {p.name: p.read_bytes() for p in folder.glob("*.onnx")} == files


def test_loader_refuses_a_changed_or_missing_shared_file(tmp_path: Path) -> None:
    folder, _ = _bundle(tmp_path)
    share_bundle_weights(folder, min_bytes=1)
    weights = folder / "inverter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of the last tensor, which the invert graph reads
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"inverter\.safetensors: sha256 mismatch"):
        load_bundle(folder)
    weights.unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"].pop("inverter.safetensors")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"inverter\.safetensors is referenced by the manifest but not listed"):
        load_bundle(folder)


def test_manifest_refuses_shared_weights_of_an_unknown_graph(tmp_path: Path) -> None:
    folder, _ = _bundle(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["exporter"]["shared_weights"] = {"nonexistent.onnx": "inverter.safetensors"}
    with pytest.raises(BundleError, match=r"nonexistent\.onnx → inverter\.safetensors must map a graph file"):
        write_manifest(folder, manifest)


def test_share_initializers_needs_one_folder(tmp_path: Path) -> None:
    folder, _ = _bundle(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    save_file({"w": torch.zeros(4)}, str(other / "w.safetensors"))
    with pytest.raises(ValueError, match="same folder"):
        share_initializers(folder / "invert.onnx", other / "w.safetensors")


def test_outpaint_export_shares_weights_and_reexports_from_the_bundles_own_file(tmp_path: Path) -> None:
    from tests.training.scgan.test_scgan import tiny
    from training.core.checkpoint import read_metadata
    from training.export.outpaint import add_outpaint, save_bundle_weights
    from training.scgan.model import Outpainter, build_scgan

    folder, _ = _bundle(tmp_path)
    torch.manual_seed(0)
    config = tiny(cn_hidden=256, g_width=32)  # G_full's kernels ≥ 64 KiB, so the default threshold shares them
    parts = build_scgan(config)
    run_checkpoint = save_bundle_weights(tmp_path / "run-scgan.safetensors",
                                         Outpainter(parts["inverter"], parts["G_full"]).eval(), config,
                                         extra={"patch_gan": {"step": 1}})  # fmt: skip
    bundle, errors = add_outpaint(folder, run_checkpoint)
    assert max(errors.values()) <= 1e-4
    assert bundle.manifest.exporter.shared_weights["outpaint.onnx"] == "scgan.safetensors"
    graph = bundle.open_graph("outpaint", providers=CPU)
    patch = np.random.default_rng(0).uniform(-1, 1, (3, 1, 14, 14)).astype(np.float32)
    z_edge = np.random.default_rng(1).standard_normal((3, config.z_edge)).astype(np.float32)
    first = graph(patch, z_edge)
    # Re-export from the bundle's own copy (what re-exporting a bundle does): same graph, same outputs, and the
    # training log is carried over rather than nested.
    own = tmp_path / "own-scgan.safetensors"
    own.write_bytes((folder / "scgan.safetensors").read_bytes())
    bundle, _ = add_outpaint(folder, own)
    np.testing.assert_array_equal(bundle.open_graph("outpaint", providers=CPU)(patch, z_edge), first)
    assert read_metadata(folder / "scgan.safetensors")["extra"] == {"trained": {"patch_gan": {"step": 1}}}
