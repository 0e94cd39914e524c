"""A GAN given as two ONNX graphs, as a GAN adapter (`training.inversion.adapter`; IJCV sec. 3.1, eq. 5).

DFI needs of a GAN only G: z → image and D^f: image → features (module docstring of `adapter`). Both can come
from graphs alone, whoever wrote the GAN and in whatever framework:

    G.onnx   one input z [batch, |z|] float32 (a symbolic batch axis) → image [batch, C, H, W] (first output)
    D.onnx   one input image [batch, C, H, W] float32 → anything; D^f is any intermediate tensor(s) of D's graph
             (`list_feature_tensors` lists the candidates with their shapes), by default the input of D's last
             Gemm / MatMul node, i.e. the features D's final linear layer reads (the zoo's "last" tap, sec. 4.7)

D's graph is extended to output the named tensors (`extend_graph`) and pruned to what they need; 4-D tensors are
average-pooled to R × R (`pool_size`, R of Table 5) and everything is flattened and concatenated, as the zoo's taps.
Both graphs are converted to differentiable torch modules with onnx2torch (`onnx.load(path)`, so weights kept as
external data next to a graph resolve): image-loss methods need gradients through G (eq. 3), the ENC_* ablations a
trainable copy of D^f's architecture (`fresh_features`), and an inverter checkpoint stores D^f's weights.

Pairs (z, D^f(G(z))) from ONNX Runtime or from onnx2torch: ONNX Runtime is faster on the CPU, so a call that needs
no gradient runs the graph in ONNX Runtime (`OnnxGraphModule`) and every other call (a gradient to z or to the
weights, a CUDA tensor, tracing / export, train mode) the onnx2torch module. DFI's latent loss (eq. 5) needs no
gradient through G or D^f, so its pairs come from ONNX Runtime. Measured with

    python benchmarks/bench_onnx_pairs.py --threads 1

on the shipped models/fashion-mnist graphs (batch 64, one thread, both back ends alternating in one run, medians of
7 repeats; 2026-12-02, this 2-core machine, shared): pairs G + D^f onnx2torch / ONNX Runtime = 1.25–1.30 (43 vs
34 ms, 40 vs 31 ms in two runs); a whole DFI step (pairs, CN 1024 wide forward + backward, Adam) 1.08–1.22 (CN's
own cost is the same in both). On a CUDA device every call runs in onnx2torch. The back ends agree to float32
rounding (max |Δ| 2.4e-6 on those pairs; `tests/training/inversion/test_onnx_graphs.py` holds them to 1e-5).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
import torch
from onnx import TensorProto
from torch import nn

from training.datasets.config import DataConfig
from training.inversion.adapter import (
    GANAdapter,
    GANSource,
    from_target_range,
    in_target_range,
    pool_tap,
    resolve_contracts,
)
from training.inversion.networks import FeatureExtractorConfig

FLOAT_TYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64",
               TensorProto.BFLOAT16: "bfloat16"}  # fmt: skip
LINEAR_OPS = ("Gemm", "MatMul")
LISTED = 50  # candidates named in an error message (a large D has hundreds)


class FeatureTensor(NamedTuple):
    """A candidate D^f tensor of a discriminator graph: name, shape from ONNX shape inference (an int per fixed
    axis, the symbol, e.g. "batch", per symbolic axis, "?" where inference could not tell) and dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str


# ---------------------------------------------------------------------------------------------------------------
# Graphs: candidate tensors, extension, pruning


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    # onnx.load(path), not the bytes: weights stored as external data next to the graph resolve from its folder.
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model)
    except (ValueError, onnx.shape_inference.InferenceError):  # a graph over 2 GB, or one inference rejects
        return model


def _dims(info: onnx.ValueInfoProto) -> tuple[int | str, ...] | None:
    kind = info.type.tensor_type
    if not kind.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in kind.shape.dim)


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph's real inputs (old exporters list initializers among the inputs too)."""
    weights = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


def list_feature_tensors(discriminator_onnx: str | Path | onnx.ModelProto) -> list[FeatureTensor]:
    """D's candidate D^f tensors in graph (topological) order: every tensor a node computes (not a Constant)
    that is floating point and has a batch axis (a first axis that is symbolic, as a dynamic-batch export gives),
    with its shape from `onnx.shape_inference.infer_shapes`. D's outputs are among them."""
    model = _inferred(_load(discriminator_onnx))
    infos = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    found: list[FeatureTensor] = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for name in node.output:
            info = infos.get(name)
            if not name or info is None or info.type.tensor_type.elem_type not in FLOAT_TYPES:
                continue
            dims = _dims(info)
            if dims and not isinstance(dims[0], int):
                found.append(FeatureTensor(name, dims, FLOAT_TYPES[info.type.tensor_type.elem_type]))
    return found


def _candidates_text(candidates: list[FeatureTensor]) -> str:
    lines = [f"{c.name} {list(c.shape)} {c.dtype}" for c in candidates[:LISTED]]
    more = f"; … and {len(candidates) - LISTED} more" if len(candidates) > LISTED else ""
    return "; ".join(lines) + more if lines else "none"


def _check_names(model: onnx.ModelProto, names: tuple[str, ...] | list[str]) -> dict[str, FeatureTensor]:
    if not names:
        raise ValueError("name at least one feature tensor of D's graph")
    candidates = list_feature_tensors(model)
    by_name = {c.name: c for c in candidates}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"unknown feature tensor(s) {unknown} in D's graph (a D^f tensor must be computed by a node, "
                         f"floating point, with a batch axis); candidates (name shape dtype): "
                         f"{_candidates_text(candidates)}")  # fmt: skip
    if len(set(names)) != len(names):
        raise ValueError(f"feature tensors named twice: {list(names)}")
    return {name: by_name[name] for name in names}


def extend_graph(model: onnx.ModelProto, tensor_names: tuple[str, ...] | list[str]) -> onnx.ModelProto:
    """A copy of D's graph with the named intermediate tensors added as graph outputs (after D's own outputs; a
    name that already is an output stays where it is). Unknown names → ValueError listing the candidates."""
    _check_names(model, tensor_names)
    inferred = {v.name: v for v in _inferred(model).graph.value_info}
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    present = {o.name for o in extended.graph.output}
    for name in tensor_names:
        if name not in present:
            extended.graph.output.append(copy.deepcopy(inferred[name]))
    return extended


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Names an If / Loop / Scan body reads from the enclosing graph (every input of its nodes; extra names are
    harmless: they only keep a value alive)."""
    names: set[str] = set()
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
        for graph in graphs:
            for inner in graph.node:
                names.update(inner.input)
                names |= _subgraph_inputs(inner)
    return names


def _pruned(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """A copy whose graph outputs are exactly `outputs`, in order, with the nodes and weights they do not need
    dropped (D's head, or a second output, then costs nothing and need not convert). A tensor produced by a node
    with several outputs goes out through an Identity: onnx2torch returns such a node's outputs as one tuple."""
    graph_in = _inferred(model)
    infos = {v.name: v for v in [*graph_in.graph.value_info, *graph_in.graph.output, *graph_in.graph.input]}
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    graph = pruned.graph
    producers = {name: node for node in graph.node for name in node.output}
    taken = {name for node in graph.node for name in (*node.input, *node.output)}
    final: list[str] = []
    for index, name in enumerate(outputs):
        producer = producers.get(name)
        if producer is not None and len([o for o in producer.output if o]) > 1:
            alias = f"dfi_feature_{index}"
            while alias in taken:
                alias += "_"
            taken.add(alias)
            graph.node.append(onnx.helper.make_node("Identity", [name], [alias], name=alias))
            infos[alias] = onnx.helper.make_value_info(alias, infos[name].type) if name in infos else None
            name = alias
        final.append(name)
    needed = set(final)
    kept = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
            needed |= _subgraph_inputs(node)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    weights = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    del graph.output[:]
    for name in final:
        info = infos.get(name)
        graph.output.append(copy.deepcopy(info) if info is not None else onnx.helper.make_empty_tensor_value_info(name))
    values = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(values)
    return pruned


def default_feature_tensor(model: onnx.ModelProto) -> tuple[str, onnx.NodeProto]:
    """The input of D's last Gemm / MatMul node (in graph order) that reads a candidate tensor: the features D's
    final linear layer sees, D^f's default (the zoo's `last` tap is the same place). Returns (tensor, node)."""
    candidates = {c.name for c in list_feature_tensors(model)}
    for node in reversed(list(model.graph.node)):
        if node.op_type in LINEAR_OPS and node.input and node.input[0] in candidates:
            return node.input[0], node
    raise ValueError(f"D's graph has no Gemm / MatMul node reading a batch tensor, so D^f has no default: name "
                     f"its tensor(s) with --features; candidates (name shape dtype): "
                     f"{_candidates_text(list_feature_tensors(model))}")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Conversion and the two back ends


def _op_label(node: onnx.NodeProto) -> str:
    return f"{node.domain}::{node.op_type}" if node.domain else node.op_type


def convert_graph(model: onnx.ModelProto, label: str) -> nn.Module:
    """`model` as a differentiable torch module (onnx2torch), eval mode, weights frozen. An op onnx2torch has no
    converter for (or one setting a converter refuses) → ValueError naming the op and its node(s)."""
    # dfi_core.refinement imports onnx2torch (with a stand-in torchvision where PyPI's CUDA torchvision cannot
    # load next to the CPU torch) and knows which ops it converts; the bundles' refinement uses the same check.
    from dfi_core.refinement import RefinementUnavailable, unsupported_ops

    hint = ("inversion from ONNX needs a D and G that onnx2torch converts here (CN trains on torch modules; "
            "image losses and the ENC_* methods need gradients): re-export without it, or give the torch code "
            "(--generator / --discriminator)")  # fmt: skip
    try:
        problems = unsupported_ops(model)
    except RefinementUnavailable as error:
        raise ValueError(f"{label}: {error.reason}; install it with `pip install --no-deps onnx2torch`") from None
    if problems:
        ops = {problem.split(" (")[0] for problem in problems}
        nodes = [f"{node.name or '(unnamed)'} ({_op_label(node)})" for node in model.graph.node
                 if _op_label(node) in ops]  # fmt: skip
        raise ValueError(f"{label}: onnx2torch cannot convert op {', '.join(problems)} at node(s) "
                         f"{', '.join(nodes)}; {hint}")  # fmt: skip
    import onnx2torch  # imported by unsupported_ops above: this is the module it loaded

    try:
        module = onnx2torch.convert(model)
    except NotImplementedError as error:  # a converter that refuses one attribute value (e.g. a Resize mode)
        raise ValueError(f"{label}: onnx2torch cannot convert the graph: {error}; {hint}") from None
    except KeyError as missing:
        # onnx2torch's Conv / Gemm converters need their weights as initializers. Graphs that compute them — a
        # spectral norm exported unfolded (W / σ(W) from the stored u, as torch-mimicry's SNGAN is) — fail here;
        # ONNX Runtime's basic optimisations (constant folding only: semantics-preserving) turn those computed
        # weights into initializers, so the folded graph converts.
        folded = _constant_folded(model)
        try:
            module = onnx2torch.convert(folded)
        except (KeyError, NotImplementedError) as error:
            raise ValueError(f"{label}: onnx2torch cannot convert the graph: a layer's weight {missing} is computed "
                             f"in the graph and does not fold to a constant ({error}); {hint}") from None  # fmt: skip
    return module.eval().requires_grad_(False)


def _constant_folded(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` after ONNX Runtime's basic graph optimisations (constant folding, redundant-node removal)."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.onnx", Path(folder) / "folded.onnx"
        onnx.save(model, str(source))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(target))


class OnnxGraphModule(nn.Module):
    """One ONNX graph as a torch module with two back ends: `module` (onnx2torch) and ONNX Runtime on the same
    graph. A call that needs no gradient on a plain CPU float32 tensor runs in ONNX Runtime (the faster here: see
    the module docstring); everything else in `module` — a gradient to the input or to trainable weights, a CUDA
    tensor, tracing / ONNX export, train mode (batch statistics). Returns a tensor, or a list for several outputs.
    Weights live in `module` (state dicts, checkpoints); the ONNX Runtime session runs the graph's own."""

    def __init__(self, module: nn.Module, model: onnx.ModelProto | None) -> None:
        super().__init__()
        self.module = module
        self.input_name = _graph_inputs(model)[0].name if model is not None else ""
        self._graph = model.SerializeToString() if model is not None and model.ByteSize() < 2**31 else None
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:  # deepcopy / pickle: an InferenceSession is neither; it reopens
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def _runtime_ok(self, x: torch.Tensor) -> bool:
        if self._graph is None or self.module.training or type(x) is not torch.Tensor:  # fake / functional tensors
            return False
        if x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return False
        wants_grad = x.requires_grad or any(p.requires_grad for p in self.module.parameters())
        return not (torch.is_grad_enabled() and wants_grad)

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()  # the CLI's --threads, as torch's
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session = ort.InferenceSession(self._graph, options, providers=["CPUExecutionProvider"])
        outputs = self._session.run(None, {self.input_name: x.detach().contiguous().numpy()})
        return [torch.from_numpy(np.asarray(o)) for o in outputs]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self._runtime_ok(x):
            outputs = self._run(x)
            return outputs[0] if len(outputs) == 1 else outputs
        return self.module(x)


class FeatureVector(nn.Module):
    """D^f from D's extended graph: each output tensor average-pooled to R × R if 4-D (sec. 4.7, R of Table 5),
    flattened and concatenated in the order named. [N, C, H, W] → [N, F]."""

    def __init__(self, graph: nn.Module, pool_size: int) -> None:
        super().__init__()
        self.graph, self.pool_size = graph, pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.graph(x)
        parts = out if isinstance(out, (list, tuple)) else [out]
        return torch.cat([pool_tap(h, self.pool_size) for h in parts], dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Contracts and the adapter


def _batch_input(model: onnx.ModelProto, role: str, path: str, rank: int | None) -> tuple[str, tuple[int | str, ...]]:
    """The graph's one input: float32, a symbolic batch axis first; (name, dims)."""
    inputs = _graph_inputs(model)
    if len(inputs) != 1:
        raise ValueError(f"{role} {path}: DFI needs a graph with one input, got {[i.name for i in inputs]}")
    info = inputs[0]
    elem = info.type.tensor_type.elem_type
    dims = _dims(info) or ()
    fix = (f"re-export with a float32 input and a dynamic batch axis, e.g. torch.onnx.export(..., "
           f"dynamic_axes={{'{info.name}': {{0: 'batch'}}}})")  # fmt: skip
    if elem != TensorProto.FLOAT:
        kind = onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else "untyped"
        raise ValueError(f"{role} {path}: ONNX input {info.name!r} is {kind}, not float (float32); {fix}")
    if not dims or isinstance(dims[0], int):
        raise ValueError(f"{role} {path}: ONNX input {info.name!r} has shape {list(dims)}: no batch axis (its first "
                         f"axis must be symbolic); {fix}")  # fmt: skip
    if rank is not None and len(dims) != rank:
        raise ValueError(f"{role} {path}: ONNX input {info.name!r} has shape {list(dims)}; expected {rank} axes")
    return info.name, dims


def _frozen_on(module: nn.Module, device: torch.device) -> nn.Module:
    return module.to(device).eval().requires_grad_(False)


def _fresh(module: nn.Module) -> nn.Module:
    """`module` deep-copied, re-initialised and trainable: reset_parameters where a layer has it, and float
    initializers of rank ≥ 2 (the weights onnx2torch keeps as buffers, e.g. a MatMul's) become parameters drawn as
    torch's Linear draws its weight (Kaiming uniform, a = √5); lower-rank constants (shapes, scales) stay."""
    fresh = copy.deepcopy(module)
    for layer in fresh.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
        for name, buffer in list(layer.named_buffers(recurse=False)):
            if buffer.is_floating_point() and buffer.dim() >= 2 and type(layer).__name__ == "InitializersContainer":
                weight = torch.empty_like(buffer)
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
                del layer._buffers[name]
                layer.register_parameter(name, nn.Parameter(weight))
    return fresh.requires_grad_(True).train()


@dataclass
class OnnxAdapter(GANAdapter):
    """A GAN from two ONNX graphs (`open_onnx_adapter`). `generator` / `features` run ONNX Runtime for calls that
    need no gradient and onnx2torch otherwise (`OnnxGraphModule`); `generator_torch` / `features_torch` are the
    same modules (same weights) without ONNX Runtime: parity checks and `fresh_features`."""

    generator_torch: nn.Module | None = None
    features_torch: nn.Module | None = None

    def fresh_features(self) -> nn.Module:
        # Table 1's ENC_*: D^f's architecture from scratch; the range map in front is not a weight and stays.
        assert self.features_torch is not None
        return _fresh(self.features_torch)


def open_onnx_adapter(
    source: GANSource,
    data: DataConfig | None,
    device: str | torch.device = "cpu",
    pool_size: int = FeatureExtractorConfig.pool_size,
) -> OnnxAdapter:
    """G from `source.generator` and D^f from `source.discriminator` extended to output `source.features`
    (default: the input of D's last Gemm / MatMul, found automatically, printed and recorded in `adapter.source`),
    both frozen on `device` and in the [-1, +1] image range (G's own range measured unless `source.value_range`).
    `pool_size` is R for 4-D feature tensors (sec. 4.7)."""
    device = torch.device(device)
    g_model, d_model = _load(source.generator), _load(source.discriminator)
    _, z_dims = _batch_input(g_model, "generator", source.generator, rank=2)
    z_dim = z_dims[1] if isinstance(z_dims[1], int) else None
    if source.z_dim is not None and z_dim is not None and source.z_dim != z_dim:
        raise ValueError(f"--z-dim {source.z_dim} contradicts G's input, which takes z of size {z_dim}")
    z_dim = z_dim or source.z_dim
    if z_dim is None:
        raise ValueError(f"G's input has a symbolic latent axis ({list(z_dims)}): give its size with --z-dim")

    g_out = g_model.graph.output[0].name  # G's image; other outputs (if any) are pruned away
    g_graph = _pruned(g_model, [g_out])
    g_torch = convert_graph(g_graph, f"generator {source.generator}")
    with torch.no_grad():
        probe = g_torch(torch.zeros(2, z_dim))
    if not isinstance(probe, torch.Tensor) or probe.dim() not in (2, 4) or probe.shape[0] != 2:
        shape = list(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
        raise ValueError(f"G's output {g_out!r} is {shape} for 2 latents: not an image batch [batch, C, H, W] "
                         "(or points [batch, D])")  # fmt: skip
    shape = tuple(int(s) for s in probe.shape[1:])
    g_raw = OnnxGraphModule(g_torch, g_graph)
    # An ONNX graph names no final layer to read the range from: given, or measured (ONNX Runtime, on the CPU).
    contracts = resolve_contracts(g_raw, z_dim=z_dim, prior=source.prior, shape=shape, value_range=source.value_range)
    latent, image = contracts.latent, contracts.image
    measured = list(contracts.measured) if contracts.measured is not None else None

    d_label = f"discriminator {source.discriminator}"
    _, d_dims = _batch_input(d_model, "discriminator", source.discriminator, rank=1 + len(shape))
    if any(isinstance(d, int) and d != s for d, s in zip(d_dims[1:], shape, strict=True)):
        raise ValueError(f"D takes images {list(d_dims)} but G makes {list(shape)}: not the same GAN's pair")
    names = tuple(source.features)
    default_node = None
    if not names:
        name, default_node = default_feature_tensor(d_model)
        names = (name,)
    tensors = _check_names(d_model, names)
    d_graph = _pruned(d_model, list(names))
    d_torch = convert_graph(d_graph, d_label)

    generator = _frozen_on(in_target_range(g_raw, image), device)
    generator_torch = _frozen_on(in_target_range(g_torch, image), device)
    features = _frozen_on(from_target_range(FeatureVector(OnnxGraphModule(d_torch, d_graph), pool_size), image), device)
    features_torch = _frozen_on(from_target_range(FeatureVector(d_torch, pool_size), image), device)
    default = f" (default: the input of D's last {default_node.op_type} {default_node.name!r})" if default_node else ""
    record = {
        "kind": "onnx", "generator": str(source.generator), "discriminator": str(source.discriminator),
        "generator_output": g_out, "features": list(names), "features_default": default_node is not None,
        "feature_shapes": {n: list(t.shape) for n, t in tensors.items()}, "pool_size": pool_size,
        "z_dim": z_dim, "prior": source.prior, "value_range": list(image.value_range),
        "value_range_measured": measured, "pairs": "onnxruntime (no-gradient CPU calls), onnx2torch otherwise",
    }  # fmt: skip
    adapter = OnnxAdapter(latent=latent, image=image, generator=generator, features=features, data=data,
                          source=record, generator_torch=generator_torch, features_torch=features_torch)  # fmt: skip
    shapes = ", ".join(f"{n} {list(t.shape)}" for n, t in tensors.items())
    print(f"ONNX GAN: z [{z_dim}] ({source.prior}) → image {list(shape)} in {list(image.value_range)}"
          f"{' (measured)' if measured else ''}; D^f = {shapes}{default} → F = {adapter.feature_dim}",
          file=sys.stderr)  # fmt: skip
    return adapter
