"""G's first layer on z, read from any generator.onnx: SeFa for a bundle of any GAN (issue 17).

SeFa (Shen & Zhou 2021, sec. 2.2) takes the first transformation G applies to z, y = Az + b, and finds the unit
directions n that move y most, argmax ‖An‖²: the top eigenvectors of AᵀA (`directions.sefa_directions`). The
zoo reads A from generator.safetensors (`directions.first_layer_of`); a bundle of a user's GAN has only
generator.onnx, so A is read from the graph:

- start at the latent input and follow z over ops that only pass it on (Identity, Cast, Flatten, Reshape) while
  it stays [N, |z|]; ops that read only z's shape (Shape, Size: exporters take the batch size from it for a later
  Reshape) are not layers and are skipped;
- the first op that computes with z must be a Linear: a Gemm Y = α·z·op(B) + βC (W = α·B with transB, else α·Bᵀ)
  or a MatMul z·B (torch's Linear without a bias, or one exported as MatMul + Add), B a constant; W is [out, |z|];
- an eval-mode BatchNormalization applied to that output alone (after the bias Add, if any) is folded in,
  diag(γ/√(σ²+ε))·W, as the zoo's SeFa folds its DCGAN's BatchNorm1d (the dynamo exporter already folds it into
  the Gemm). A BatchNorm after reshaping to a map is not folded: it acts per channel, and other branches (a
  residual shortcut) may read the unnormalised map.

Anything else — typically a DCGAN's ConvTranspose on z reshaped to [N, |z|, 1, 1], or z fed to two layers — is
refused with a `SeFaError` naming the op and node that were found. Constant weights may be initializers, Constant
nodes or tensors computed from those alone (an Identity alias, a spectral norm W/σ(W) exported as ops): the last
are evaluated with ONNX Runtime, on a zero z, since they do not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

PASS_THROUGH = ("Identity", "Cast", "Flatten", "Reshape")  # value-preserving; kept only while z stays [N, |z|]
SHAPE_READERS = ("Shape", "Size")  # read z's shape, never its values
LINEAR_OPS = ("Gemm", "MatMul")
NEEDS = "SeFa needs G's first layer on z to be a Linear (Gemm/MatMul)"


class SeFaError(ValueError):
    """G's first layer on z is not a Linear (or its weight is not a constant): no SeFa for this generator."""


@dataclass(frozen=True)
class FirstLayer:
    """A = the weight [out, |z|] of G's first layer on z (float64), and where it was read."""

    weight: np.ndarray
    layer: str  # e.g. "Gemm '/fc/Gemm'" or "project.0 (generator.safetensors)"
    batchnorm: str | None = None  # the BatchNorm whose scale is folded in, if any
    before: tuple[str, ...] = ()  # the pass-through ops between the latent input and the layer

    def describe(self) -> str:
        text = self.layer + (f" after {', '.join(self.before)}" if self.before else "")
        return text + (f", with the scale of {self.batchnorm} folded in" if self.batchnorm else "")


def _label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} '{node.name or node.output[0]}'"


def _attribute(node: onnx.NodeProto, name: str, default: float | int) -> float | int:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


class _Graph:
    """Producers, consumers and constant values of one ONNX graph, with z as its latent input."""

    def __init__(self, model: onnx.ModelProto, label: str, latent_input: str | None, z_dim: int | None) -> None:
        self.model, self.label = model, label
        graph = model.graph
        self.initializers = {t.name: t for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.initializers]  # old exporters list weights too
        self.inputs = {i.name for i in inputs}
        if latent_input is None:
            if len(inputs) != 1:
                raise SeFaError(f"{label}: {len(inputs)} inputs ({sorted(self.inputs)}); name the latent one")
            latent_input = inputs[0].name
        if latent_input not in self.inputs:
            raise SeFaError(f"{label}: no input {latent_input!r}; its inputs: {sorted(self.inputs)}")
        self.z = latent_input
        if z_dim is None:
            dims = next(i for i in inputs if i.name == latent_input).type.tensor_type.shape.dim
            z_dim = dims[-1].dim_value if len(dims) == 2 and dims[-1].HasField("dim_value") else None
        if not z_dim:
            raise SeFaError(f"{label}: the size of latent input {latent_input!r} is not fixed; give |z|")
        self.z_dim = z_dim
        self.producers = {name: node for node in graph.node for name in node.output if name}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in dict.fromkeys(node.input):  # a node reading a tensor twice is one consumer
                if name:
                    self.consumers.setdefault(name, []).append(node)

    def users(self, tensor: str) -> list[onnx.NodeProto]:
        """The nodes that read the values of `tensor` (not just its shape)."""
        return [n for n in self.consumers.get(tensor, []) if n.op_type not in SHAPE_READERS]

    def depends_on_input(self, tensor: str) -> bool:
        seen, todo = set(), [tensor]
        while todo:
            name = todo.pop()
            if name in self.inputs:
                return True
            if name in seen or name in self.initializers or name not in self.producers:
                continue
            seen.add(name)
            todo.extend(i for i in self.producers[name].input if i)
        return False

    def evaluate(self, names: list[str], batch: int = 1) -> dict[str, np.ndarray]:
        """The named tensors for z = 0 [batch, |z|], by ONNX Runtime on a copy of the graph that outputs them."""
        import onnxruntime as ort

        if not names:
            return {}
        probe = onnx.ModelProto()
        probe.CopyFrom(self.model)
        del probe.graph.output[:]
        probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {self.z: np.zeros((batch, self.z_dim), np.float32)}
        return dict(zip(names, session.run(names, feeds), strict=True))

    def constants(self, names: list[str], reader: onnx.NodeProto) -> list[np.ndarray]:
        """Values of tensors that must not depend on z (a layer's weight, a BatchNorm's statistics)."""
        values: dict[str, np.ndarray] = {}
        computed = []
        for name in names:
            producer = self.producers.get(name)
            if name in self.initializers:
                values[name] = numpy_helper.to_array(self.initializers[name])
            elif producer is not None and producer.op_type == "Constant" and producer.attribute[0].name == "value":
                values[name] = numpy_helper.to_array(producer.attribute[0].t)
            elif producer is None or self.depends_on_input(name):  # a graph input, or computed from one
                raise SeFaError(f"{NEEDS}; {self.label}: input {name!r} of {_label(reader)} comes from the graph's "
                                f"input(s) {sorted(self.inputs)}, not a constant weight")  # fmt: skip
            else:
                computed.append(name)
        values.update(self.evaluate(computed))
        return [values[name].astype(np.float64) for name in names]


def _pass_through(graph: _Graph) -> tuple[str, list[onnx.NodeProto], list[onnx.NodeProto]]:
    """Follow z over pass-through ops: (the tensor reached, the ops passed, the nodes that read it)."""
    tensor, passed = graph.z, []
    while True:
        users = graph.users(tensor)
        if len(users) == 1 and users[0].op_type in PASS_THROUGH and users[0].input[0] == tensor:
            passed.append(users[0])
            tensor = users[0].output[0]
            continue
        return tensor, passed, users


def _check_still_latent(graph: _Graph, passed: list[onnx.NodeProto], first: onnx.NodeProto) -> None:
    """Every pass-through op must leave z as [N, |z|] (a Reshape to [N, |z|, 1, 1] makes the next op a conv's)."""
    reshaping = [node for node in passed if node.op_type in ("Reshape", "Flatten")]
    shapes = graph.evaluate([node.output[0] for node in reshaping], batch=2)
    for node in reshaping:
        shape = shapes[node.output[0]].shape
        if shape != (2, graph.z_dim):
            dims = ", ".join(["N", *map(str, shape[1:])]) if shape and shape[0] == 2 else ", ".join(map(str, shape))
            raise SeFaError(f"{NEEDS}, z as [N, {graph.z_dim}]; {graph.label} starts with {_label(first)} after "
                            f"{_label(node)} makes z [{dims}]")  # fmt: skip


def _linear_weight(graph: _Graph, node: onnx.NodeProto, tensor: str) -> np.ndarray:
    """W [out, |z|] of a Gemm or MatMul that multiplies z (its first input) by a constant."""
    if node.input[0] != tensor or tensor in node.input[1:]:
        raise SeFaError(f"{NEEDS}; {graph.label}: {_label(node)} takes z as a weight (inputs {list(node.input)}), "
                        "not only as the batch of a Linear (its first input)")  # fmt: skip
    if node.op_type == "Gemm":
        if _attribute(node, "transA", 0):
            raise SeFaError(f"{NEEDS}; {graph.label}: {_label(node)} transposes z (transA=1)")
        (b,) = graph.constants([node.input[1]], node)
        weight = float(_attribute(node, "alpha", 1.0)) * (b if _attribute(node, "transB", 0) else b.T)
    else:
        (b,) = graph.constants([node.input[1]], node)
        if b.ndim != 2:
            raise SeFaError(f"{NEEDS}; {graph.label}: {_label(node)} multiplies z by a {b.ndim}-D tensor {b.shape}")
        weight = b.T
    if weight.ndim != 2 or weight.shape[1] != graph.z_dim:
        raise SeFaError(f"{NEEDS}; {graph.label}: {_label(node)} has a weight {b.shape}, not one of [|z| = "
                        f"{graph.z_dim}, out]")  # fmt: skip
    return weight


def _batchnorm_scale(graph: _Graph, output: str) -> tuple[np.ndarray, onnx.NodeProto] | None:
    """γ/√(σ²+ε) of an eval-mode BatchNormalization that alone reads the layer's output (after a bias Add)."""
    users = graph.users(output)
    if len(users) == 1 and users[0].op_type == "Add":
        other = [name for name in users[0].input if name != output]
        if len(other) == 1 and not graph.depends_on_input(other[0]):
            output, users = users[0].output[0], graph.users(users[0].output[0])
    if len(users) != 1 or users[0].op_type != "BatchNormalization" or users[0].input[0] != output:
        return None
    node = users[0]
    if _attribute(node, "training_mode", 0):
        return None
    gamma, var = graph.constants([node.input[1], node.input[4]], node)
    return gamma / np.sqrt(var + float(_attribute(node, "epsilon", 1e-5))), node


def onnx_first_layer(
    generator: str | Path | onnx.ModelProto,
    latent_input: str | None = None,
    z_dim: int | None = None,
    fold_batchnorm: bool = True,
    label: str = "generator.onnx",
) -> FirstLayer:
    """A = G's first Linear layer on z, [out, |z|], from an ONNX generator (module docstring); `SeFaError` when
    G's first layer on z is not a Linear. latent_input / z_dim: read from the graph when it has one input of a
    fixed size."""
    model = generator if isinstance(generator, onnx.ModelProto) else onnx.load(str(generator))  # + external data
    graph = _Graph(model, label, latent_input, z_dim)
    tensor, passed, users = _pass_through(graph)
    if not users:
        raise SeFaError(f"{NEEDS}; {label}: no op reads the values of z")
    if len(users) > 1:
        raise SeFaError(f"{NEEDS}; {label} feeds z to {len(users)} ops ({', '.join(map(_label, users))}), so G has "
                        "no single first layer on z")  # fmt: skip
    (first,) = users
    _check_still_latent(graph, passed, first)
    if first.op_type not in LINEAR_OPS:
        raise SeFaError(f"{NEEDS}; {label} starts with {_label(first)}")
    weight = _linear_weight(graph, first, tensor)
    folded = _batchnorm_scale(graph, first.output[0]) if fold_batchnorm else None
    if folded is not None:
        weight = folded[0][:, None] * weight
    return FirstLayer(weight.astype(np.float64), _label(first), _label(folded[1]) if folded else None,
                      tuple(map(_label, passed)))  # fmt: skip
