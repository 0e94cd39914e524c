"""SeFa from generator.onnx alone (issue 17: "SeFa only where G's first layer is a Linear, otherwise say so"):
tiny seeded generators exported with the TorchScript exporter (a fraction of a second each) and hand-built graphs;
A read from the graph must be the torch weight (BatchNorm scale folded in), its SeFa directions the eigenvectors of
AᵀA computed from that weight, and the shipped zoo bundle's stored SeFa directions must come out of its graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from dfi_core.bundle import load_bundle
from training.editing.directions import first_layer_of, sefa_directions
from training.editing.onnx_first_layer import SeFaError, onnx_first_layer
from training.export.onnx import export_graph

Z = 6
ROOT = Path(__file__).resolve().parents[3]


class LinearFirst(nn.Module):
    """z → Linear (optionally without bias, or with a BatchNorm1d) → a 4×4 map → ConvTranspose → Tanh. `reshape`
    passes z through a no-op Reshape first (an op the walk must step over)."""

    def __init__(self, bias: bool = True, batchnorm: bool = False, reshape: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(Z, 2 * 4 * 4, bias=bias)
        self.norm = nn.BatchNorm1d(2 * 4 * 4) if batchnorm else nn.Identity()
        self.up = nn.ConvTranspose2d(2, 1, 4, 2, 1)
        self.reshape = reshape
        if batchnorm:  # statistics far from the initial (γ = 1, σ² = 1), so that folding them in matters
            with torch.no_grad():
                self.norm.weight.uniform_(0.5, 2.0)
                self.norm.running_var.uniform_(0.2, 3.0)
                self.norm.running_mean.normal_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(-1, Z) if self.reshape else z
        return torch.tanh(self.up(torch.relu(self.norm(self.fc(z))).view(-1, 2, 4, 4)))

    def applied_weight(self) -> np.ndarray:
        """diag(γ/√(σ²+ε))·W: the linear map G applies to z in eval mode, from the torch parameters."""
        weight = self.fc.weight.detach().double()
        if isinstance(self.norm, nn.BatchNorm1d):
            weight = (self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)).detach().double()[
                :, None
            ] * weight
        return weight.numpy()


class ConvFirst(nn.Module):
    """DCGAN-style: z reshaped to [N, |z|, 1, 1] into a ConvTranspose2d (no Linear on z)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(Z, 2, 4, 1, 0), nn.ConvTranspose2d(2, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(-1, Z, 1, 1))


def _export(module: nn.Module, path: Path) -> Path:
    return export_graph(module.eval(), torch.randn(2, Z), path, "z", "image", exporter="torchscript")


def _same_up_to_sign(a: np.ndarray, b: np.ndarray) -> float:
    """max |a_i − s_i b_i| over rows, each row's sign s_i chosen to fit."""
    signs = np.sign(np.sum(a * b, axis=1, keepdims=True))
    return float(np.abs(a - signs * b).max())


@pytest.mark.parametrize(
    ("options", "layer", "folded"),
    [({}, "Gemm", False), ({"bias": False}, "MatMul", False), ({"batchnorm": True}, "Gemm", True),
     ({"reshape": True}, "Gemm", False)],
    ids=["linear", "no-bias", "batchnorm", "reshape"],
)  # fmt: skip
def test_sefa_of_a_linear_first_generator_is_that_of_its_torch_weight(
    tmp_path: Path, options: dict[str, bool], layer: str, folded: bool
) -> None:
    torch.manual_seed(0)
    G = LinearFirst(**options)
    found = onnx_first_layer(_export(G, tmp_path / "g.onnx"))
    assert found.layer.startswith(layer) and (found.batchnorm is not None) == folded, found.describe()
    if options.get("reshape"):
        assert found.before and found.before[0].startswith("Reshape"), found.describe()
    want = G.applied_weight()
    np.testing.assert_allclose(found.weight, want, atol=1e-6)
    # The reference: eigenvectors of WᵀW from the torch weight, by torch, largest eigenvalue first.
    values, vectors = torch.linalg.eigh(torch.from_numpy(want.T @ want))
    reference = vectors.flip(1).T[:3].numpy()
    directions, eigenvalues = sefa_directions(found.weight, 3)
    assert directions.shape == (3, Z)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-12)
    assert _same_up_to_sign(directions, reference) < 1e-5
    np.testing.assert_allclose(eigenvalues, values.flip(0)[:3].numpy(), rtol=1e-6)


def test_a_generator_that_starts_with_a_conv_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SeFaError, match=r"to be a Linear \(Gemm/MatMul\).*generator.onnx starts with ConvTranspose "
                       r"'/net/net.0/ConvTranspose' after Reshape '/Reshape' makes z \[N, 6, 1, 1\]"):  # fmt: skip
        onnx_first_layer(_export(ConvFirst(), tmp_path / "g.onnx"))


def _graph(
    nodes: list[onnx.NodeProto],
    weights: dict[str, np.ndarray],
    out: str,
    width: int,
    extra_inputs: list[onnx.ValueInfoProto] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", Z]), *(extra_inputs or [])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_hand_built_graphs() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, Z))  # [out, |z|]
    # Gemm without transB (B = Wᵀ) and α = 0.5, its B an Identity of a Constant node: evaluated by ONNX Runtime;
    # z's Shape (read by exporters for a later Reshape) is not a layer.
    constant = helper.make_node("Constant", [], ["b0"], value=numpy_helper.from_array(w.T.astype(np.float32)))
    gemm = _graph([constant, helper.make_node("Identity", ["b0"], ["b"]), helper.make_node("Shape", ["z"], ["s"]),
                   helper.make_node("Gemm", ["z", "b"], ["y"], name="fc", alpha=0.5)], {}, "y", 5)  # fmt: skip
    found = onnx_first_layer(gemm)
    assert found.layer == "Gemm 'fc'" and found.batchnorm is None
    np.testing.assert_allclose(found.weight, 0.5 * w, atol=1e-6)
    # MatMul + Add (a Linear exported unfused) → BatchNormalization: folded in; fold_batchnorm=False leaves W.
    gamma, var = rng.uniform(0.5, 2, 5), rng.uniform(0.2, 3, 5)
    norm = {"w": w.T, "bias": rng.normal(size=5), "gamma": gamma, "beta": np.zeros(5), "mean": rng.normal(size=5),
            "var": var}  # fmt: skip
    matmul = _graph([helper.make_node("MatMul", ["z", "w"], ["h"], name="mm"),
                     helper.make_node("Add", ["h", "bias"], ["hb"]),
                     helper.make_node("BatchNormalization", ["hb", "gamma", "beta", "mean", "var"], ["y"], name="bn",
                                      epsilon=1e-3)], norm, "y", 5)  # fmt: skip
    found = onnx_first_layer(matmul)
    assert found.describe() == "MatMul 'mm', with the scale of BatchNormalization 'bn' folded in"
    np.testing.assert_allclose(found.weight, (gamma / np.sqrt(var + 1e-3))[:, None] * w, atol=1e-5)
    np.testing.assert_allclose(onnx_first_layer(matmul, fold_batchnorm=False).weight, w, atol=1e-6)
    # z fed to two layers: no single first layer.
    twice = _graph([helper.make_node("MatMul", ["z", "w"], ["a"], name="one"),
                    helper.make_node("MatMul", ["z", "w"], ["b"], name="two"),
                    helper.make_node("Add", ["a", "b"], ["y"])], {"w": w.T}, "y", 5)  # fmt: skip
    with pytest.raises(SeFaError, match=r"feeds z to 2 ops \(MatMul 'one', MatMul 'two'\)"):
        onnx_first_layer(twice)
    # A weight that is a graph input (a hypernetwork's, say) is no constant: refused, naming it.
    fed = _graph([helper.make_node("MatMul", ["z", "w"], ["y"], name="mm")], {}, "y", 5,
                 extra_inputs=[helper.make_tensor_value_info("w", TensorProto.FLOAT, [Z, 5])])  # fmt: skip
    with pytest.raises(SeFaError, match=r"input 'w' of MatMul 'mm' comes from the graph's input\(s\)"):
        onnx_first_layer(fed, latent_input="z")


def test_shipped_bundle_sefa_from_its_graph_is_the_stored_one() -> None:
    """models/fashion-mnist stores the zoo's SeFa (A from generator.safetensors, BatchNorm folded in): the same
    A and the same directions (up to sign) come out of its generator.onnx alone."""
    bundle = load_bundle(ROOT / "models" / "fashion-mnist")
    stored = {name: d for name, d in bundle.manifest.directions.items() if name.startswith("sefa_")}
    assert len(stored) == 5, sorted(bundle.manifest.directions)
    from_graph = onnx_first_layer(bundle.path("generator.onnx"))
    assert from_graph.layer.startswith("MatMul") and from_graph.batchnorm is not None, from_graph.describe()
    np.testing.assert_allclose(from_graph.weight, first_layer_of(bundle).weight, atol=1e-6)
    directions, _ = sefa_directions(from_graph.weight, len(stored))
    vectors = np.stack([np.load(bundle.path(stored[f"sefa_{i}"].file)) for i in range(len(stored))]).astype(float)
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert _same_up_to_sign(directions, units) < 1e-5
