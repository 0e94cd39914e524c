"""A GAN given as ONNX graphs (training.inversion.onnx_graphs): D's candidate tensors, the extended graph, the
adapter's contracts and its parity with ONNX Runtime, DFI end to end through the CLI, the shipped graphs, and
the errors a user can fix.

The GANs are foreign to the zoo and tiny, defined here and exported with torch.onnx.export (opset 17, dynamic
batch): a G with a mapping MLP before its transposed convolutions (tanh, or sigmoid for a [0, 1] range) and a D
whose feature vector is a functional op (global sum pooling) read by two Linear heads (two outputs).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn
from typer.testing import CliRunner

from training.cli.app import app
from training.datasets.config import DataConfig
from training.inversion.adapter import GANSource
from training.inversion.dfi import InverterConfig, fit_inverter, load_inverter_adapter
from training.inversion.onnx_graphs import (
    default_feature_tensor,
    extend_graph,
    list_feature_tensors,
    open_onnx_adapter,
)

Z = 16
SHIPPED = Path(__file__).resolve().parents[3] / "models" / "fashion-mnist"
# torch and ONNX Runtime run the same float32 weights in different kernels (other summation orders in MatMul,
# Conv, ConvTranspose), so they agree to float32 rounding, not bit for bit: a few 1e-6 on these O(1) outputs
# (5e-6 measured on the shipped graphs). 1e-5 passes that and fails any real disagreement (a wrong weight, a
# dropped bias, a train-mode batch norm), which moves outputs by far more.
ATOL = 1e-5
runner = CliRunner()


class MappedG(nn.Module):
    """z → a mapping MLP → 8×7×7 → two transposed convolutions → 1×28×28; tanh ([-1, 1]) or sigmoid ([0, 1])."""

    def __init__(self, squash: str = "tanh", scale: float = 1.0) -> None:
        super().__init__()
        self.mapping = nn.Sequential(nn.Linear(Z, 32), nn.LeakyReLU(0.2), nn.Linear(32, 8 * 7 * 7))
        self.up = nn.Sequential(nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.ReLU(),
                                nn.ConvTranspose2d(4, 1, 4, 2, 1))  # fmt: skip
        self.squash, self.scale = getattr(torch, squash), scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * self.squash(self.up(self.mapping(z).view(-1, 8, 7, 7)))


class SumPoolD(nn.Module):
    """Two strided convolutions, global *sum* pooling (a functional op, no module), then two Linear heads."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 4, 2, 1), nn.Conv2d(8, 16, 4, 2, 1)
        self.logit, self.aux = nn.Linear(16, 1), nn.Linear(16, 10)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.leaky_relu(self.conv1(x), 0.2)
        return nn.functional.leaky_relu(self.conv2(h), 0.2).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.pooled(x)
        return self.logit(f), self.aux(f)


def export(module: nn.Module, example: torch.Tensor, path: Path, inputs: str, outputs: list[str],
           dynamic: bool = True) -> Path:  # fmt: skip
    axes = {name: {0: "batch"} for name in (inputs, *outputs)} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "dynamo=False is deprecated" (the dynamo exporter needs onnxscript)
        torch.onnx.export(module.eval(), (example,), str(path), input_names=[inputs], output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def gan(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("onnx-gan")
    torch.manual_seed(0)
    G, G01, D = MappedG(), MappedG("sigmoid"), SumPoolD()
    for module in (G, G01):  # non-trivial running statistics, so a train-mode batch norm would show
        module.up[1].running_mean.uniform_(-0.2, 0.2)
        module.up[1].running_var.uniform_(0.5, 1.5)
    z, x = torch.zeros(2, Z), torch.zeros(2, 1, 28, 28)
    return {
        "G": G.eval(), "G01": G01.eval(), "D": D.eval(), "root": root,
        "g": export(G, z, root / "g.onnx", "z", ["image"]),
        "g01": export(G01, z, root / "g01.onnx", "z", ["image"]),
        "d": export(D, x, root / "d.onnx", "image", ["logit", "aux"]),
    }  # fmt: skip


def ort_run(path: Path | onnx.ModelProto, feed: torch.Tensor, outputs: list[str] | None = None) -> list[np.ndarray]:
    model = path if isinstance(path, onnx.ModelProto) else onnx.load(str(path))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, {session.get_inputs()[0].name: feed.numpy()})


def pooled_name(d_path: Path) -> str:
    return next(n.output[0] for n in onnx.load(str(d_path)).graph.node if n.op_type == "ReduceSum")


def source(gan: dict, g: str = "g", **fields) -> GANSource:
    return GANSource("onnx", str(gan[g]), str(gan["d"]), **fields)


def test_lists_float_batch_tensors_with_inferred_shapes(gan) -> None:
    tensors = {t.name: t for t in list_feature_tensors(gan["d"])}
    pooled = pooled_name(gan["d"])
    assert tensors[pooled].shape == ("batch", 16) and tensors[pooled].dtype == "float32"
    convs = [t for t in tensors.values() if t.shape[1:] in ((8, 14, 14), (16, 7, 7))]
    assert len(convs) >= 2  # conv outputs (and their activations) with their spatial sizes
    assert tensors["logit"].shape == ("batch", 1) and tensors["aux"].shape == ("batch", 10)
    model = onnx.load(str(gan["d"]))
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    assert not constants & set(tensors) and "image" not in tensors  # int axes of ReduceSum, the input
    name, node = default_feature_tensor(model)
    assert name == pooled and node.op_type == "Gemm"  # the input of the last Linear head


def test_extend_graph_outputs_the_named_tensor(gan) -> None:
    model = onnx.load(str(gan["d"]))
    pooled = pooled_name(gan["d"])
    extended = extend_graph(model, [pooled])
    assert [o.name for o in extended.graph.output] == ["logit", "aux", pooled]
    assert [o.name for o in model.graph.output] == ["logit", "aux"]  # the input graph is left as it was
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    (out,) = ort_run(extended, x, [pooled])
    with torch.no_grad():
        expected = gan["D"].pooled(x).numpy()
    assert np.abs(out - expected).max() <= ATOL
    with pytest.raises(ValueError, match="unknown feature tensor.*'nope'.*candidates.*" + pooled.replace("/", ".")):
        extend_graph(model, ["nope"])


def test_adapter_contracts_and_parity_with_onnx_runtime(gan) -> None:
    adapter = open_onnx_adapter(source(gan), DataConfig("fashion-mnist"))
    assert adapter.latent.size == Z and adapter.image.shape == (1, 28, 28)
    assert adapter.image.value_range == (-1.0, 1.0) and adapter.source["value_range_measured"] is not None
    assert adapter.source["features"] == [pooled_name(gan["d"])] and adapter.source["features_default"]
    assert adapter.feature_dim == 16
    z = adapter.sample_z(8, torch.Generator().manual_seed(1))
    (image,) = ort_run(gan["g"], z)
    with torch.no_grad():
        torch_image = adapter.generator_torch(z)
        torch_feats = adapter.features_torch(torch_image)
        runtime_image = adapter.generator(z)  # no gradient: ONNX Runtime
    (feats,) = ort_run(extend_graph(onnx.load(str(gan["d"])), [pooled_name(gan["d"])]), torch_image,
                       [pooled_name(gan["d"])])  # fmt: skip
    assert np.abs(torch_image.numpy() - image).max() <= ATOL
    assert np.abs(torch_feats.numpy() - feats).max() <= ATOL
    assert np.array_equal(runtime_image.numpy(), image)  # the same session: bit-identical
    with torch.no_grad():  # and both agree with the torch modules the graphs were exported from
        assert (torch_image - gan["G"](z)).abs().max() <= ATOL
        assert (torch_feats - gan["D"].pooled(torch_image)).abs().max() <= ATOL
    z_grad = z.clone().requires_grad_(True)  # a gradient to z (eq. 2, image losses) goes through onnx2torch
    adapter.generator(z_grad).square().sum().backward()
    assert z_grad.grad is not None and z_grad.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in adapter.features.parameters())


def test_zero_one_generator_is_mapped_to_minus_one_one(gan) -> None:
    adapter = open_onnx_adapter(source(gan, "g01"), None)
    assert adapter.image.value_range == (0.0, 1.0)
    z = adapter.sample_z(4, torch.Generator().manual_seed(2))
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert (adapter.generator(z) - (2 * gan["G01"](z) - 1)).abs().max() <= ATOL
        assert (adapter.features(x) - gan["D"].pooled((x + 1) / 2)).abs().max() <= ATOL  # D sees G's range


def test_out_of_range_generator_needs_value_range(gan) -> None:
    path = export(MappedG(scale=3.0), torch.zeros(2, Z), gan["root"] / "g3.onnx", "z", ["image"])
    with pytest.raises(ValueError, match="--value-range"):
        open_onnx_adapter(GANSource("onnx", str(path), str(gan["d"])), None)
    adapter = open_onnx_adapter(GANSource("onnx", str(path), str(gan["d"]), value_range=(-3.0, 3.0)), None)
    assert adapter.image.value_range == (-3.0, 3.0) and adapter.source["value_range_measured"] is None


def test_fresh_features_are_reinitialised_and_trainable(gan) -> None:
    adapter = open_onnx_adapter(source(gan), None)
    before = {k: v.clone() for k, v in adapter.features.state_dict().items()}
    torch.manual_seed(3)
    fresh = adapter.fresh_features()
    weights = [p for p in fresh.parameters()]
    assert weights and all(p.requires_grad for p in weights) and fresh.training
    frozen = dict(adapter.features_torch.named_parameters())
    assert all(not torch.equal(p, frozen[name]) for name, p in fresh.named_parameters() if p.dim() >= 2)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    fresh(x).sum().backward()
    assert all(p.grad is not None for p in weights)
    assert all(torch.equal(v, adapter.features.state_dict()[k]) for k, v in before.items())  # D^f untouched


def test_cli_trains_dfi_and_the_checkpoint_reopens(gan, tmp_path: Path) -> None:
    conv = next(t.name for t in list_feature_tensors(gan["d"]) if t.shape[1:] == (16, 7, 7))
    names = f"{conv},{pooled_name(gan['d'])}"  # a 4-D map (pooled to 4×4, sec. 4.7) and the pooled vector
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "inverter", "--generator-onnx", str(gan["g"]), "--discriminator-onnx",
                                 str(gan["d"]), "--features", names, "--data", "fashion-mnist", "--steps", "3",
                                 "--hidden", "128", "--batch-size", "16", "--log-every", "1", "--sample-every", "3",
                                 "--device", "cpu", "--run-dir", str(run)])  # fmt: skip
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3] and all(np.isfinite(r["loss"]) for r in log[1:])
    inverter, adapter, config = load_inverter_adapter(run / "inverter.safetensors")
    assert config.source is not None and config.source.features == tuple(names.split(","))
    # The graphs are recorded by absolute path with their sha256 (a changed graph is refused on resume / reload).
    assert config.source.generator == str(gan["g"].resolve()) and config.source.discriminator == str(gan["d"].resolve())
    assert config.source.sha256 == {"generator": hashlib.sha256(gan["g"].read_bytes()).hexdigest(),
                                    "discriminator": hashlib.sha256(gan["d"].read_bytes()).hexdigest()}  # fmt: skip
    assert adapter.feature_dim == 16 * 4 * 4 + 16
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert inverter(x).shape == (4, Z)
        # D^f's weights in the checkpoint are the graph's: the frozen features were stored and reloaded unchanged
        assert (inverter.features(x) - adapter.features_torch(x)).abs().max() <= ATOL


@pytest.mark.parametrize("method", ["dfi_image", "enc_latent"])
def test_image_loss_and_fresh_encoder_methods_train(gan, method: str, tmp_path: Path) -> None:
    config = InverterConfig(source=source(gan), data=DataConfig("fashion-mnist"), method=method, steps=2,
                            hidden=128, batch_size=8, log_every=1, sample_every=2, device="cpu")  # fmt: skip
    path, inverter = fit_inverter(config, tmp_path, quiet=True)
    assert path.exists()
    trained = dict(inverter.features.named_parameters())
    if method == "enc_latent":  # the encoder trained (from scratch), D^f's graph weights did not
        assert all(p.requires_grad for p in trained.values())
    else:
        assert not any(p.requires_grad for p in trained.values())


def test_shipped_graphs_open_as_an_adapter() -> None:
    files = {p.name: p.stat().st_mtime_ns for p in SHIPPED.iterdir()}
    pair = GANSource("onnx", str(SHIPPED / "generator.onnx"), str(SHIPPED / "discriminator_features.onnx"))
    adapter = open_onnx_adapter(pair, DataConfig("fashion-mnist"))
    assert adapter.latent.size == 64 and adapter.image.shape == (1, 28, 28) and adapter.feature_dim == 3136
    whole = open_onnx_adapter(GANSource("onnx", pair.generator, pair.discriminator, features=("features",)), None)
    z = whole.sample_z(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = whole.generator_torch(z)
        feats = whole.features_torch(x)
    (expected,) = ort_run(SHIPPED / "discriminator_features.onnx", x)
    assert feats.shape == (4, 3648) and np.abs(feats.numpy() - expected).max() <= ATOL
    assert {p.name: p.stat().st_mtime_ns for p in SHIPPED.iterdir()} == files  # read only


def test_input_without_batch_axis_or_not_float_is_refused(gan) -> None:
    fixed = export(MappedG(), torch.zeros(2, Z), gan["root"] / "fixed.onnx", "z", ["image"], dynamic=False)
    with pytest.raises(ValueError, match="no batch axis"):
        open_onnx_adapter(GANSource("onnx", str(fixed), str(gan["d"])), None)
    z = helper.make_tensor_value_info("z", TensorProto.INT64, ["batch", Z])
    out = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", Z])
    graph = helper.make_graph([helper.make_node("Cast", ["z"], ["image"], to=TensorProto.FLOAT)], "g", [z], [out])
    path = gan["root"] / "int.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ValueError, match="int64, not float"):
        open_onnx_adapter(GANSource("onnx", str(path), str(gan["d"])), None)


def test_unknown_feature_tensor_lists_candidates(gan) -> None:
    with pytest.raises(ValueError, match="unknown feature tensor.*candidates.*logit"):
        open_onnx_adapter(source(gan, features=("h4",)), None)


def shrink_d(path: Path, in_head: bool) -> Path:
    """image → Flatten → [Shrink] → MatMul → logit → [Shrink]: onnx2torch has no Shrink converter."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])
    logit = helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [784, 1], np.full(784, 0.01, np.float32).tolist())
    if in_head:  # Shrink after the last MatMul: pruned away with D's head
        nodes = [helper.make_node("Flatten", ["image"], ["flat"], name="flatten"),
                 helper.make_node("MatMul", ["flat", "w"], ["score"], name="head"),
                 helper.make_node("Shrink", ["score"], ["logit"], name="odd_head")]  # fmt: skip
    else:
        nodes = [helper.make_node("Flatten", ["image"], ["flat"], name="flatten"),
                 helper.make_node("Shrink", ["flat"], ["shrunk"], name="odd_op", lambd=0.1),
                 helper.make_node("MatMul", ["shrunk", "w"], ["logit"], name="head")]  # fmt: skip
    graph = helper.make_graph(nodes, "d", [image], [logit], initializer=[weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_unconvertible_op_is_named_with_its_node(gan) -> None:
    bad = shrink_d(gan["root"] / "shrink.onnx", in_head=False)
    with pytest.raises(ValueError, match="cannot convert op Shrink.*odd_op.*inversion from ONNX needs"):
        open_onnx_adapter(GANSource("onnx", str(gan["g"]), str(bad)), None)
    head = shrink_d(gan["root"] / "shrink_head.onnx", in_head=True)
    adapter = open_onnx_adapter(GANSource("onnx", str(gan["g"]), str(head)), None)  # D^f never reaches Shrink
    assert adapter.source["features"] == ["flat"] and adapter.feature_dim == 784


def test_feature_from_a_node_with_several_outputs(gan) -> None:
    """onnx2torch returns a multi-output node's outputs as one tuple; D^f must still be exactly the named one."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])
    logit = helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1])
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [2], [392, 392])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [392, 1], np.full(392, 0.01, np.float32).tolist())
    nodes = [helper.make_node("Flatten", ["image"], ["flat"], name="flatten"),
             helper.make_node("Split", ["flat", "sizes"], ["top", "bottom"], name="split", axis=1),
             helper.make_node("MatMul", ["bottom", "w"], ["logit"], name="head")]  # fmt: skip
    graph = helper.make_graph(nodes, "d", [image], [logit], initializer=[sizes, weight])
    path = gan["root"] / "split.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    for names, half in (((), slice(392, None)), (("top",), slice(None, 392))):  # default: the MatMul's input
        adapter = open_onnx_adapter(GANSource("onnx", str(gan["g"]), str(path), features=names), None)
        assert adapter.feature_dim == 392
        with torch.no_grad():
            assert torch.equal(adapter.features_torch(x), x.flatten(1)[:, half])
            assert torch.equal(adapter.features(x), x.flatten(1)[:, half])


class ComputedWeightD(nn.Module):
    """A D whose conv weight is computed in the exported graph: the legacy hook-based spectral norm exports
    W / σ(W) (from the stored u, v) as ops, as torch-mimicry's SNGAN does. onnx2torch's Conv converter needs an
    initializer; the adapter folds constants first (ONNX Runtime, basic level)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.utils.spectral_norm(nn.Conv2d(1, 8, 4, 2, 1))
        self.logit = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(nn.functional.relu(self.conv(x)).sum(dim=(2, 3)))


def test_weights_computed_in_the_graph_are_folded_before_conversion(gan) -> None:
    torch.manual_seed(2)
    D = ComputedWeightD()
    D(torch.randn(4, 1, 28, 28))  # a power-iteration step in train mode, so u, v are not their initial values
    path = export(D.eval(), torch.zeros(2, 1, 28, 28), gan["root"] / "sn-d.onnx", "image", ["logit"])
    assert any(n.op_type == "Div" for n in onnx.load(str(path)).graph.node)  # W / σ is in the graph
    adapter = open_onnx_adapter(GANSource("onnx", str(gan["g"]), str(path)), DataConfig("fashion-mnist"))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    name = next(n.output[0] for n in onnx.load(str(path)).graph.node if n.op_type == "ReduceSum")
    (expected,) = ort_run(extend_graph(onnx.load(str(path)), [name]), x, [name])
    with torch.no_grad():
        assert np.abs(adapter.features_torch(x).numpy() - expected).max() <= ATOL
