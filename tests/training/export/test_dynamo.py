"""The dynamo exporter (`torch.onnx.export(..., dynamo=True)`, the library's default): the bundle's graph contract
(names, dynamic batch, opset 17, one file per graph), parity with torch, weight sharing and onnx2torch on its graphs,
the two-input outpaint graph — and the one model it cannot export yet, for which TorchScript stays.

The rest of tests/training/export runs with TorchScript in the default suite (conftest.py: a dynamo export costs
3–6 s per graph here); the default suite checks dynamo on the "spectral" case (spectral-norm folding, the
non-dividing adaptive-pool rewrite, GroupNorm in the CN), the slow tests every case of test_onnx.py and the
two-input graph.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import save_file

from dfi_core.bundle import BATCH_DIM, GRAPH_CONTRACT, load_bundle, write_manifest
from dfi_core.onnx_graph import OnnxGraph
from dfi_core.refinement import load_bundle_generator
from tests.training.export.test_onnx import CASES, Z, export
from training.export.bundle import exporter_for
from training.export.onnx import check_parity, export_graph, exporter_description
from training.export.outpaint import export_two_input_graph, onnx_parity, parity_inputs
from training.export.shared_weights import share_bundle_weights
from training.inversion.adapter import GANSource
from training.inversion.onnx_graphs import open_onnx_adapter
from training.scgan.model import Outpainter, SCGANConfig, build_scgan

CPU = ["CPUExecutionProvider"]
TOLERANCE = 1e-4  # the bundle's parity bound (training.export.bundle.PARITY_TOLERANCE)
DEFAULT_CASE = "spectral"


@pytest.fixture(scope="module")
def dynamo_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, tuple]]:
    """case → (bundle folder, (G, D^f, inverter)), each case exported once with dynamo per module."""
    done: dict[str, tuple[Path, tuple]] = {}

    def get(case: str) -> tuple[Path, tuple]:
        if case not in done:
            done[case] = export(tmp_path_factory.mktemp("dynamo"), f"dynamo-{case}", case, exporter="dynamo")
        return done[case]

    return get


CASE_PARAMS = [pytest.param(c, marks=() if c == DEFAULT_CASE else pytest.mark.slow) for c in CASES]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_dynamo_graphs_match_torch(dynamo_export, case: str) -> None:
    path, (G, features, inverter) = dynamo_export(case)
    errors = check_parity(path, G, features, inverter, n=64, batch_sizes=(1, 64))
    assert set(errors) == set(GRAPH_CONTRACT) and max(errors.values()) <= TOLERANCE, (case, errors)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_dynamo_graphs_keep_the_contract(dynamo_export, case: str) -> None:
    path, _ = dynamo_export(case)
    manifest = load_bundle(path).manifest
    assert manifest.exporter.exporter == exporter_description("dynamo")
    assert manifest.exporter.exporter.startswith("torch.onnx.export(dynamo=True)")
    # one self-contained file per graph: no external-data side files (external_data=False)
    assert {p.name for p in path.iterdir()} == {*manifest.files, "manifest.json"}
    rng = np.random.default_rng(0)
    for graph, (file, input_name, output_name) in GRAPH_CONTRACT.items():
        model = onnx.load(str(path / file), load_external_data=False)
        assert [(o.domain or "ai.onnx", o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [
            ("ai.onnx", 17)
        ]
        assert manifest.graphs.entries()[graph].opset == manifest.exporter.opset == 17
        assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
        entry = manifest.graphs.entries()[graph]
        session = OnnxGraph(path / file, providers=CPU)
        assert (session.input_name, session.output_name) == (input_name, output_name)
        assert list(session.input_shape) == entry.input.shape and list(session.output_shape) == entry.output.shape
        assert entry.input.shape[0] == entry.output.shape[0] == BATCH_DIM
        for batch in (1, 7, 64):
            x = rng.uniform(-1, 1, (batch, *entry.input.shape[1:])).astype(np.float32)
            assert session(x).shape == (batch, *entry.output.shape[1:]), (case, graph, batch)


def test_dynamo_graphs_share_weights_and_convert_back_to_torch(dynamo_export, tmp_path: Path) -> None:
    """Weight sharing matches initializers by their bytes, so dynamo must keep the state-dict tensors as they are
    (G's and CN's, BatchNorm unfused; D^f's spectral-norm weights are folded and stay embedded); refinement of a
    bundle without generator.safetensors converts generator.onnx with onnx2torch, so dynamo's ops must convert."""
    source, (G, _, inverter) = dynamo_export(DEFAULT_CASE)
    folder = Path(shutil.copytree(source, tmp_path / source.name))
    save_file({k: v.contiguous() for k, v in inverter.state_dict().items()}, str(folder / "inverter.safetensors"))
    write_manifest(folder, json.loads((folder / "manifest.json").read_text()))
    saved = share_bundle_weights(folder, min_bytes=1)  # raises unless the shared graphs give bit-identical outputs
    # every float tensor of G is shared: BatchNorm is not folded into the layer before it (_batchnorm_unfused)
    g_bytes = sum(v.numel() * 4 for v in G.state_dict().values() if v.dtype == torch.float32)
    assert saved["generator.onnx"] == g_bytes and saved["invert.onnx"] > 0, (saved, g_bytes)
    refined = load_bundle_generator(load_bundle(folder), prefer="onnx2torch")  # checked against ONNX Runtime
    assert refined.source == "onnx2torch" and refined.parity["onnx2torch_vs_onnxruntime"] <= TOLERANCE


@pytest.mark.slow  # ~5 s; the shipped outpaint graph's dynamo re-export is checked by scripts/reexport_check.py
def test_dynamo_two_input_outpaint_graph(tmp_path: Path) -> None:
    """outpaint.onnx: patch and z_edge share one batch axis; a tiny SCGAN (spectral-norm D_center, G_full)."""
    torch.manual_seed(0)
    config = SCGANConfig(g_width=8, d_width=8, feature_dim=32, cn_hidden=128, z_center=4, z_edge=3, device="cpu")
    modules = build_scgan(config)
    with torch.no_grad():  # train-mode passes so spectral norm's u, v and batch-norm statistics move
        modules["D_center"](torch.randn(8, 1, 14, 14))
        modules["G_full"](torch.randn(8, config.z_center + config.z_edge))
    outpainter = Outpainter(modules["inverter"], modules["G_full"]).eval()
    patch, z_edge = parity_inputs(config, n=8)
    path = export_two_input_graph(outpainter, (patch[:2], z_edge[:2]), tmp_path / "outpaint.onnx", exporter="dynamo")
    graph = OnnxGraph(path, name="outpaint", providers=CPU)
    assert graph.input_names == ["patch", "z_edge"] and graph.output_name == "image"
    assert [list(s) for s in graph.input_shapes] == [[BATCH_DIM, 1, 14, 14], [BATCH_DIM, config.z_edge]]
    assert list(graph.output_shape) == [BATCH_DIM, *config.shape]
    errors = onnx_parity(graph, outpainter, patch, z_edge, batch_sizes=(1, 8))
    assert max(errors.values()) <= TOLERANCE, errors


def test_dynamo_cannot_export_onnx2torch_modules_so_onnx_gans_use_torchscript(dynamo_export, tmp_path: Path) -> None:
    """A GAN given as ONNX graphs reaches torch through onnx2torch, whose Reshape branches on its shape tensor's
    values (`if torch.any(shape == 0)`): torch.export refuses the data-dependent branch, TorchScript traces it.
    When this test fails at the first `raises`, dynamo exports such modules: drop TORCHSCRIPT_ADAPTERS
    (training/export/bundle.py)."""
    source, _ = dynamo_export(DEFAULT_CASE)
    pair = GANSource("onnx", str(source / "generator.onnx"), str(source / "discriminator_features.onnx"))
    adapter = open_onnx_adapter(pair, None)
    assert exporter_for(adapter) == "torchscript"
    z = torch.randn(8, Z, generator=torch.Generator().manual_seed(0))
    with pytest.raises(Exception, match=r"(?s)torch\.export.*(GuardOnDataDependentSymNode|data-dependent)"):
        export_graph(adapter.generator, z[:2], tmp_path / "g-dynamo.onnx", "z", "image", exporter="dynamo")
    path = export_graph(adapter.generator, z[:2], tmp_path / "g.onnx", "z", "image", exporter="torchscript")
    with torch.no_grad():
        expected = adapter.generator(z).numpy()
    assert np.abs(OnnxGraph(path, providers=CPU)(z.numpy()) - expected).max() <= TOLERANCE
