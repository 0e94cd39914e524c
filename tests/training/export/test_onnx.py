"""ONNX export of tiny DFI models into bundles: parity with torch, dynamic batch, the graph contract, refinement."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from dfi_core.bundle import GRAPH_CONTRACT, BundleError, load_bundle
from dfi_core.onnx_graph import OnnxGraph
from dfi_core.refinement import load_refinement_generator
from training.export.onnx import (
    FusedInverter,
    _exportable_adaptive_pool,
    check_parity,
    default_exporter,
    export_bundle,
    export_graph,
    exporter_description,
)
from training.gan.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from training.inversion.networks import (
    ConnectionNetwork,
    ConnectionNetworkConfig,
    DiscriminatorFeatures,
    FeatureExtractorConfig,
)

Z = 8
CASES = {  # id: (shape, norm, taps); 14×14 and 7×7 maps pooled to 4×4 exercise the non-dividing pooling rewrite
    "batch": ((1, 28, 28), "batch", ("actv14-0", "last")),
    "spectral": ((1, 28, 28), "spectral", ("actv14-0", "last")),
    "layer": ((1, 28, 28), "layer", ("actv7-0", "last")),
    "rgb64-spectral": ((3, 64, 64), "spectral", ("actv8-0", "last")),
}
CPU = ["CPUExecutionProvider"]


def build(shape: tuple[int, ...], norm: str, taps: tuple[str, ...], seed: int = 0):
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(shape=shape, z_dim=Z, width=8))
    D = Discriminator(DiscriminatorConfig(shape=shape, width=8, feature_dim=16, norm=norm))
    # A few training-mode passes so batch-norm statistics and spectral-norm vectors are not at their init values.
    with torch.no_grad():
        for _ in range(3):
            D(G(torch.randn(16, Z)))
    features = DiscriminatorFeatures(D, FeatureExtractorConfig(taps=taps, pool_size=4))
    connection = ConnectionNetwork(ConnectionNetworkConfig(in_dim=features.out_dim, z_dim=Z, hidden=32, groups=8))
    for module in (G, D, connection):
        module.eval()
    return G, features, FusedInverter(features, connection)


def export(out: Path, name: str, case: str, **kwargs) -> tuple[Path, tuple]:
    models = build(*CASES[case])
    G, features, inverter = models
    path = export_bundle(
        out,
        name,
        G,
        features,
        inverter,
        dataset={"name": "fashion-mnist", "split": "train", "license": "MIT, zalandoresearch/fashion-mnist"},
        training={"commands": ["python -m training train-gan --loss dcgan"], "seeds": {"gan": 0, "dfi": 0}},
        metrics={"psnr": 15.5},
        gan_config={"generator": {"shape": list(G.cfg.shape), "z_dim": Z, "width": 8}, "loss": {"name": "dcgan"}},
        **kwargs,
    )
    return path, models


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory) -> tuple[str, Path, tuple]:
    path, models = export(tmp_path_factory.mktemp("bundles"), f"tiny-{request.param}", request.param)
    return request.param, path, models


def test_parity_with_torch(exported) -> None:
    case, path, (G, features, inverter) = exported
    errors = check_parity(path, G, features, inverter, n=64, batch_sizes=(1, 64))
    assert set(errors) == set(GRAPH_CONTRACT)
    assert max(errors.values()) <= 1e-4, (case, errors)


def test_dynamic_batch_and_graph_contract(exported) -> None:
    case, path, (G, features, _) = exported
    bundle = load_bundle(path)
    manifest = bundle.manifest
    image = ["batch", *G.cfg.shape]
    assert manifest.graphs.invert.input.shape == image and manifest.graphs.invert.output.shape == ["batch", Z]
    assert manifest.graphs.generator.output.shape == image
    assert manifest.graphs.discriminator_features.output.shape == ["batch", features.out_dim]
    assert manifest.exporter.opset == 17 and manifest.exporter.exporter == exporter_description(default_exporter())
    rng = np.random.default_rng(0)
    for graph, (file, input_name, output_name) in GRAPH_CONTRACT.items():
        entry = manifest.graphs.entries()[graph]
        session = OnnxGraph(path / file, providers=CPU)
        assert entry.file == file
        assert (
            (session.input_name, session.output_name)
            == (input_name, output_name)
            == (entry.input.name, entry.output.name)
        )
        assert list(session.input_shape) == entry.input.shape and list(session.output_shape) == entry.output.shape
        for batch in (1, 7, 64):
            x = rng.uniform(-1, 1, (batch, *entry.input.shape[1:])).astype(np.float32)
            assert session(x).shape == (batch, *entry.output.shape[1:]), (case, graph, batch)


def test_exported_bundle_loads_and_refuses_a_tampered_byte(exported, tmp_path: Path) -> None:
    _, path, _ = exported
    bundle = load_bundle(path)
    assert set(bundle.manifest.files) == {f for f, _, _ in GRAPH_CONTRACT.values()} | {"generator.safetensors"}
    assert bundle.manifest.training.gan_config["loss"] == {"name": "dcgan"}
    copy = shutil.copytree(path, tmp_path / path.name)
    data = bytearray((copy / "invert.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "invert.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"invert\.onnx: sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}"):
        load_bundle(copy)


def test_refinement_weights_rebuild_the_generator(exported, tmp_path: Path) -> None:
    _, path, (G, _, _) = exported
    alone = shutil.copy(path / "generator.safetensors", tmp_path / "g.safetensors")  # no manifest next to it
    rebuilt = load_refinement_generator(alone)
    assert rebuilt.cfg == G.cfg and not rebuilt.training
    z = torch.randn(16, Z, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (rebuilt(z) - G(z)).abs().max().item() <= 1e-6


def test_export_keeps_the_callers_modules_as_they_were(tmp_path: Path) -> None:
    G, features, inverter = build(*CASES["spectral"])
    D = features.discriminator
    inverter.train()
    G.train()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    export_graph(inverter, G.eval()(torch.randn(2, Z)).detach(), tmp_path / "invert.onnx", "image", "z")
    G.train()
    assert parametrize.is_parametrized(D.logit) and parametrize.is_parametrized(D.blocks["last"][1])
    assert inverter.training and G.training  # flags untouched by export_graph
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items())
    with torch.no_grad():
        D.eval()(torch.zeros(2, 1, 28, 28))  # the parametrised forward still works


def test_export_graph_needs_a_batch_of_two(tmp_path: Path) -> None:
    G, _, _ = build(*CASES["batch"])
    with pytest.raises(ValueError, match="batch of ≥ 2"):
        export_graph(G, torch.randn(1, Z), tmp_path / "g.onnx", "z", "image")


def test_existing_bundle_folder_needs_overwrite(tmp_path: Path) -> None:
    first, _ = export(tmp_path, "twice", "batch")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export(tmp_path, "twice", "batch")
    second, _ = export(tmp_path, "twice", "batch", overwrite=True)
    assert second == first and load_bundle(second).name == "twice"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twice"]  # no temporary folders left behind


@pytest.mark.parametrize(("size", "out"), [(14, 4), (7, 4), (7, 3), (28, 4), (5, 1), (4, 4)])
def test_exportable_adaptive_pool_matches_torch(size: int, out: int) -> None:
    x = torch.randn(2, 3, size, size)
    expected = torch.nn.functional.adaptive_avg_pool2d(x, out)
    with _exportable_adaptive_pool():
        actual = torch.nn.functional.adaptive_avg_pool2d(x, out)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() <= 1e-6
