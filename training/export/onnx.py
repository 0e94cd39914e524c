"""Export a trained DFI model as a bundle (`dfi_core.bundle`): three ONNX graphs, G's weights, a manifest.

Graphs (fixed names, dynamic batch axis "batch"; see `dfi_core.bundle.GRAPH_CONTRACT`):
    invert                  image [batch, C, H, W] → z [batch, |z|]      D^f then the connection network, fused
    generator               z [batch, |z|] → image [batch, C, H, W]
    discriminator_features  image [batch, C, H, W] → features [batch, F] D^f

Exporter: the dynamo-based `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript's torchlib), the
default since torch 2.9, where the TorchScript-based exporter (`dynamo=False`) is deprecated. TorchScript stays
selectable (`exporter="torchscript"`, `--exporter torchscript`, $DFI_ONNX_EXPORTER) for a model dynamo cannot
capture; `tests/training/export/test_dynamo.py` records what it cannot do today, so that a torch release that fixes
it shows up as a failing test. The graph contract does not depend on the exporter: the same names, a dynamic batch
axis "batch", opset 17 (torchlib builds opset-18 graphs; the ONNX version converter takes them down to the
manifest's opset, and a graph left at another opset is refused), one self-contained .onnx file per graph
(`external_data=False`; `training.export.shared_weights` points large weights into the bundle's safetensors after),
its Reshapes without the `allowzero=1` that onnx2torch refuses where it is inert (`_drop_inert_allowzero`), and
BatchNorm left unfused so that weights stay byte-equal to the safetensors files (`_batchnorm_unfused`).
Two rewrites are made on a private copy of each module, never on the caller's, for both exporters:
  * spectral norm (torch.nn.utils.parametrizations): the parametrised weights are folded (W / sigma with the stored
    u, v — exactly what eval mode computes) into plain parameters. TorchScript cannot export eval-mode sigma at all
    (`aten::vdot` has no ONNX symbolic); dynamo could, but folding keeps sigma out of every forward pass.
  * adaptive average pooling to a size that does not divide the input (D^f's R×R pooling of a 14×14 or 7×7 map
    at R = 4): TorchScript refuses it. During export `adaptive_avg_pool2d` is computed as two matrix products
    with the same averaging windows (start = ⌊iH/R⌋, end = ⌈(i+1)H/R⌉). dynamo would decompose it into gathers and
    reductions; the two MatMuls keep the graphs the ones the shipped bundles were checked with.

Any GAN (`training.inversion.adapter.GANAdapter`): the graphs are traced from the adapter's modules — G and D^f
already in the [-1, +1] image range — and the shapes and latent prior come from its image and latent contracts.
ONNX cannot give gradients, so for torch-side latent refinement (the paper's DFI^opt) a zoo generator
(`dfi_core.generator.Generator`) also gets `generator.safetensors` (its state_dict and config JSON) and the
manifest's `refinement` block; `dfi_core.refinement.load_refinement_generator` rebuilds G from that file alone.
A user's G is of an architecture `dfi_core` does not know, so its bundle has neither: whoever refines converts
generator.onnx with onnx2torch (`dfi_core.refinement.load_bundle_generator`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import onnx
import torch
from pydantic import ValidationError
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parametrize

from dfi_core.bundle import (
    BATCH_DIM,
    FORMAT_VERSION,
    GRAPH_CONTRACT,
    PREPROCESSING,
    REFINEMENT_FILE,
    REFINEMENT_FORMAT,
    Bundle,
    LatentPrior,
    load_bundle,
    write_manifest,
)
from training.gan.networks import Generator
from training.inversion.adapter import ImageContract, LatentContract
from training.inversion.networks import ConnectionNetwork

DEFAULT_OPSET = 17  # the bundle contract's opset (dfi_core.bundle; every shipped graph): unchanged by the exporter
Exporter = Literal["dynamo", "torchscript"]
EXPORTERS: tuple[Exporter, ...] = get_args(Exporter)
EXPORTER_ENV = "DFI_ONNX_EXPORTER"  # the default exporter when a call names none ("dynamo" when unset)


def default_exporter() -> Exporter:
    """$DFI_ONNX_EXPORTER if set (checked), else "dynamo"."""
    value = os.environ.get(EXPORTER_ENV, "dynamo")
    if value not in EXPORTERS:
        raise ValueError(f"${EXPORTER_ENV}={value!r}: the ONNX exporter must be one of {list(EXPORTERS)}")
    return value  # type: ignore[return-value]


def exporter_description(exporter: Exporter) -> str:
    """The manifest's `exporter.exporter`: which torch.onnx.export path wrote the graphs."""
    if exporter == "dynamo":
        import onnxscript

        return (f"torch.onnx.export(dynamo=True) (torch.export + onnxscript {onnxscript.__version__} torchlib; "
                "opset-18 graphs converted to the manifest's opset by the ONNX version converter)")  # fmt: skip
    return "torch.onnx.export(dynamo=False) (TorchScript-based; deprecated since torch 2.9)"


class FusedInverter(nn.Module):
    """invert = CN ∘ D^f: image [N, C, H, W] → ẑ [N, |z|]."""

    def __init__(self, features: nn.Module, connection: ConnectionNetwork) -> None:
        super().__init__()
        self.features, self.connection = features, connection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.connection(self.features(x))


# --------------------------------------------------------------------------------------------------- rewriting


def _fold_parametrizations(module: nn.Module) -> nn.Module:
    """A deep copy of `module` in eval mode with every parametrisation (spectral norm) folded into a plain tensor.

    torch's deepcopy of a parametrised module keeps the shared `Parametrized<Cls>` class, and
    `remove_parametrizations` deletes the property from that class — which would break the caller's module —
    so each copied module gets a private class first.
    """
    plain = copy.deepcopy(module).eval()
    with torch.no_grad():
        for sub in plain.modules():
            if not parametrize.is_parametrized(sub):
                continue
            cls = type(sub)
            private = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
            sub.__class__ = type(cls.__name__, cls.__bases__, private)
            for name in list(sub.parametrizations.keys()):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
    plain.requires_grad_(False)
    return plain


def _pool_matrix(size_in: int, size_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[size_out, size_in] averaging weights of adaptive pooling along one axis."""
    matrix = torch.zeros(size_out, size_in, dtype=dtype, device=device)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@contextlib.contextmanager
def _exportable_adaptive_pool() -> Iterator[None]:
    """Within the block, `F.adaptive_avg_pool2d` to a non-dividing size is computed by matrix products."""
    original = nn.functional.adaptive_avg_pool2d

    def pool(x: torch.Tensor, output_size: Any) -> torch.Tensor:
        with warnings.catch_warnings():  # the spatial size is fixed per model: baking it into the graph is right
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            height, width = int(x.shape[-2]), int(x.shape[-1])
        out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        out_h, out_w = out_h or height, out_w or width
        if height % out_h == 0 and width % out_w == 0:
            return original(x, (out_h, out_w))  # the exporter handles the dividing case (AveragePool)
        rows = _pool_matrix(height, out_h, x.dtype, x.device)
        cols = _pool_matrix(width, out_w, x.dtype, x.device)
        return torch.matmul(torch.matmul(rows, x), cols.t())

    nn.functional.adaptive_avg_pool2d = pool
    try:
        yield
    finally:
        nn.functional.adaptive_avg_pool2d = original


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Eval mode and no grad inside the block; each module's training flag is restored after."""
    flags = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.train(flag)


# ------------------------------------------------------------------------------------------------------ export


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters' chatter off for the block: TorchScript's deprecation and tracer warnings, and the dynamo
    path's log lines (the opset 18 → 17 conversion it is asked for, torchvision's absent NMS ops it never needs)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # "dynamo=False is deprecated"
        warnings.filterwarnings("ignore", category=FutureWarning)
        # GroupNorm's degenerate-size check (torch.nn.functional._verify_batch_size) only ever raises.
        warnings.filterwarnings("ignore", "Converting a tensor to a Python boolean", torch.jit.TracerWarning)
        # dynamo, two inputs: both batch axes are the one symbol they were given, which it names once
        warnings.filterwarnings("ignore", "# The axis name: .* shares the same shape constraints", UserWarning)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@contextlib.contextmanager
def _batchnorm_unfused() -> Iterator[None]:
    """Within the block, onnxscript's graph optimizer (run by the dynamo exporter) leaves BatchNormalization alone.

    Its default rewrite rules fold an eval-mode BatchNorm into the Conv / ConvTranspose / Gemm before it, which
    rewrites those weights: they no longer equal the bytes in generator.safetensors / inverter.safetensors, and the
    bundle would carry G's and a BN discriminator's weights twice (`training.export.shared_weights` matches by
    content). The shipped graphs keep BatchNormalization as a node (ONNX Runtime fuses what it can at load).
    onnxscript has no switch for it, so its rule list is filtered for the block; were the list to move, the export
    still works and only the sharing test (tests/training/export/test_dynamo.py) notices the duplicate."""
    try:
        from onnxscript import rewriter
        from onnxscript.rewriter.rules.common import _fuse_batchnorm
    except ImportError:
        yield
        return
    original = getattr(rewriter, "_DEFAULT_REWRITE_RULES", None)
    if original is None:
        yield
        return
    fusing = set(map(id, _fuse_batchnorm.rules))
    rewriter._DEFAULT_REWRITE_RULES = tuple(rule for rule in original if id(rule) not in fusing)
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = original


def _torch_onnx_export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: tuple[str, ...],
    output_name: str,
    opset: int,
    exporter: Exporter,
) -> None:
    """One call of `torch.onnx.export` on the chosen path, writing a single self-contained file at `path`."""
    if exporter == "dynamo":
        batch = torch.export.Dim(BATCH_DIM)  # one symbol for every input: the batch axis is shared
        with _batchnorm_unfused():
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(input_names),
                output_names=[output_name],
                dynamic_shapes=tuple({0: batch} for _ in args),
                opset_version=opset,
                dynamo=True,
                external_data=False,  # one file, as the bundle layout has it; sharing comes after (shared_weights)
                optimize=True,  # constant shapes for Reshape (onnx2torch needs them), dead ops removed
                verbose=False,
            )
    elif exporter == "torchscript":
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_axes={name: {0: BATCH_DIM} for name in (*input_names, output_name)},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    else:
        raise ValueError(f"unknown ONNX exporter {exporter!r}: one of {list(EXPORTERS)}")


def _drop_inert_allowzero(model: onnx.ModelProto) -> int:
    """Clear `allowzero=1` on each Reshape whose target shape is a constant without a 0; returns how many.

    torchlib writes every `view`/`reshape` as Reshape(allowzero=1), which onnx2torch 1.5.15 refuses ("allowzero=1 is
    not implemented") — and bundles without generator.safetensors refine through onnx2torch. The attribute only
    decides how a 0 in the shape is read (ONNX Reshape-14), so for a constant shape with no 0 (dynamo's are
    [-1, C, H, W]-like) clearing it changes nothing the graph computes."""
    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    cleared = 0
    for node in model.graph.node:
        allowzero = [a for a in node.attribute if a.name == "allowzero" and a.i == 1]
        if node.op_type != "Reshape" or not allowzero or len(node.input) < 2 or node.input[1] not in constants:
            continue
        if (onnx.numpy_helper.to_array(constants[node.input[1]]) != 0).all():
            node.attribute.remove(allowzero[0])
            cleared += 1
    return cleared


def export_graph(
    module: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    path: str | Path,
    input_name: str | tuple[str, ...],
    output_name: str,
    opset: int = DEFAULT_OPSET,
    exporter: Exporter | None = None,
) -> Path:
    """Export `module` (evaluated in eval mode; the caller's module is not changed) to ONNX at `path`.

    One output and one or more inputs (a tuple of examples with a tuple of names, as SCGAN's patch + z_edge), all
    with fixed names and a dynamic batch axis named "batch"; checked by `onnx.checker`. Each example is a CPU
    batch of at least 2, the same for every input (a batch of 1 could let the tracer bake size-1 shapes; torch.export
    specialises a dimension of size 1). exporter: "dynamo" or "torchscript"; None: `default_exporter()`.
    """
    exporter = exporter or default_exporter()
    examples = example if isinstance(example, tuple) else (example,)
    input_names = input_name if isinstance(input_name, tuple) else (input_name,)
    if len(examples) != len(input_names):
        raise ValueError(f"{len(examples)} example(s) for input names {list(input_names)}")
    if any(e.dim() < 1 or e.shape[0] < 2 for e in examples) or len({e.shape[0] for e in examples}) > 1:
        raise ValueError(f"export examples need one batch of ≥ 2, got shapes {[list(e.shape) for e in examples]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = _fold_parametrizations(module).cpu()
    args = tuple(e.detach().cpu() for e in examples)
    with _exportable_adaptive_pool(), torch.no_grad(), _quiet_exporter():
        _torch_onnx_export(plain, args, path, input_names, output_name, opset, exporter)
        reference = plain(*args)
    model = onnx.load(str(path))
    # torchlib writes opset-18 graphs and, when the version converter cannot take one down to the requested opset,
    # keeps it at 18 with only a log line: a manifest would then state an opset its graph does not have.
    graph_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if graph_opset != opset:
        raise RuntimeError(f"{path}: the {exporter} exporter wrote opset {graph_opset}, not the requested {opset}")
    if exporter == "dynamo":
        _drop_inert_allowzero(model)
    # The tracer's shape inference leaves some output dims symbolic (e.g. after ConvTranspose); all but the
    # batch axis are fixed by the architecture, so write them down from a real forward pass.
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != reference.dim():
        raise RuntimeError(f"{path}: output rank {len(dims)} ≠ torch's {reference.dim()}")
    for axis, dim in enumerate(dims):
        if axis == 0:
            dim.dim_param = BATCH_DIM
        else:
            dim.dim_value = int(reference.shape[axis])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != (list(input_names), [output_name]):
        raise RuntimeError(f"{path}: exported graph has inputs/outputs {names}, expected {input_names} → {output_name}")
    return path


def _graph_shapes(path: Path) -> tuple[list[int | str], list[int | str]]:
    """Input and output shapes of a one-input, one-output ONNX file (dynamic dims by name)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return dims(graph.input[0]), dims(graph.output[0])


def save_refinement_generator(path: str | Path, generator: Generator, gan_config: dict[str, Any] | None = None) -> Path:
    """G's state_dict + `generator_config` (and optionally the GAN config) as JSON in the safetensors metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    metadata = {
        "format": REFINEMENT_FORMAT,
        "generator_config": json.dumps(asdict(generator.cfg)),
        "gan_config": json.dumps(gan_config or {}),
    }
    save_file(tensors, str(path), metadata=metadata)
    return Path(path)


def _device(module: nn.Module) -> torch.device:
    """Where `module` computes: its first parameter's (or buffer's) device; the CPU for a module with neither."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def latent_prior(latent: LatentContract) -> dict[str, Any]:
    """The manifest's `latent.prior` for a latent contract, checked against the bundle schema
    (`dfi_core.bundle.LatentPrior`): N(0, I) is {normal, mean 0, std 1}, U(-1, 1) would be {uniform, low -1, high 1}.
    The schema records only a normal prior today, so a uniform-prior GAN is refused here, before any export."""
    if latent.prior == "normal":
        prior: dict[str, Any] = {"distribution": "normal", "mean": 0.0, "std": 1.0}
    else:
        prior = {"distribution": "uniform", "low": -1.0, "high": 1.0}
    try:
        LatentPrior.model_validate(prior)
    except ValidationError:
        # Writing "normal" for it instead would tell every reader of the manifest a wrong p(z) (eq. 5's prior).
        raise ValueError(f"the bundle format (dfi_core.bundle.LatentPrior) cannot record this GAN's latent prior "
                         f"{prior}: it knows only a normal prior N(0, I), so a uniform-prior GAN cannot be bundled "
                         "yet") from None  # fmt: skip
    return prior


def _versions() -> dict[str, str]:
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def export_bundle(
    out_dir: str | Path,
    name: str,
    generator: nn.Module,
    features: nn.Module,
    inverter: nn.Module,
    *,
    dataset: dict[str, Any],
    training: dict[str, Any],
    metrics: dict[str, Any],
    gan_config: dict[str, Any],
    latent: LatentContract | None = None,
    image: ImageContract | None = None,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    overwrite: bool = False,
    exporter: Exporter | None = None,
) -> Path:
    """Write the bundle folder `out_dir/name` and return its path.

    generator: z [N, |z|] → image [N, C, H, W] in [-1, +1]; features: image → D^f [N, F] (a GAN adapter's
    `generator` and `features`); inverter: any module mapping images [N, C, H, W] → z [N, |z|] (e.g.
    `FusedInverter(features, CN)`). latent / image: the adapter's contracts (|z| and prior; (C, H, W)); None → read
    from a zoo generator's config (N(0, I)). A zoo generator (`dfi_core.generator.Generator`) also gets
    generator.safetensors and the `refinement` block; any other G refines from generator.onnx (onnx2torch).
    exporter: the torch.onnx.export path of all three graphs (None: `default_exporter()`), named in the manifest.
    dataset: {name, split, license}; training: {commands, seeds, checkpoints} (gan_config is added to it: the zoo's
    GAN config, or the adapter's record of a user's GAN); metrics: free-form. The folder is built next to its
    destination and moved there when complete.
    """
    exporter = exporter or default_exporter()
    zoo = isinstance(generator, Generator)
    if (latent is None or image is None) and not zoo:
        raise ValueError("export_bundle needs the latent and image contracts for a generator that is not of the zoo")
    latent = latent or LatentContract(generator.cfg.z_dim)
    shape, z_dim = tuple(image.shape if image is not None else generator.cfg.shape), latent.size
    prior = latent_prior(latent)
    if len(shape) != 3:
        raise ValueError(f"bundles hold image models [C, H, W]; the generator makes shape {shape}")
    out_dir = Path(out_dir)
    final = out_dir / name
    if final.exists() and not overwrite:
        raise FileExistsError(f"bundle folder {final} exists (pass overwrite=True to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    try:
        with _eval_mode(generator, features, inverter):
            z = latent.sample(2, torch.Generator().manual_seed(seed))  # z ~ the prior: inputs as real ones
            images = generator(z.to(_device(generator))).cpu()
        examples = {"invert": images, "generator": z, "discriminator_features": images}
        modules = {"invert": inverter, "generator": generator, "discriminator_features": features}
        graphs = {}
        for graph, (file, input_name, output_name) in GRAPH_CONTRACT.items():
            path = export_graph(modules[graph], examples[graph], tmp / file, input_name, output_name, opset, exporter)
            in_shape, out_shape = _graph_shapes(path)
            graphs[graph] = {
                "file": file,
                "input": {"name": input_name, "shape": in_shape},
                "output": {"name": output_name, "shape": out_shape},
                "opset": opset,
            }
        if zoo:  # the architecture dfi_core.generator rebuilds; any other G refines from generator.onnx
            save_refinement_generator(tmp / REFINEMENT_FILE, generator, gan_config)
        versions = _versions()
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "dataset": dataset,
            "image": {"channels": shape[0], "height": shape[1], "width": shape[2], "preprocessing": PREPROCESSING},
            "latent": {"size": z_dim, "prior": prior},
            "graphs": graphs,
            "training": {**training, "gan_config": gan_config},
            "metrics": metrics,
            "exporter": {**versions, "exporter": exporter_description(exporter), "opset": opset},
            "directions": {},
        }
        if zoo:
            manifest["refinement"] = {"file": REFINEMENT_FILE, "format": "safetensors",
                                      "generator_config": asdict(generator.cfg)}  # fmt: skip
        write_manifest(tmp, manifest)
        load_bundle(tmp)  # round trip: the bundle is valid before it takes its final name
        for path in [tmp, *tmp.rglob("*")]:  # mkdtemp and safetensors create owner-only modes; the service may not
            path.chmod(0o755 if path.is_dir() else 0o644)  # run as the exporting user
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# ------------------------------------------------------------------------------------------------------ parity


def check_parity(
    bundle_dir: str | Path,
    generator: nn.Module,
    features: nn.Module,
    inverter: nn.Module,
    n: int = 64,
    batch_sizes: tuple[int, ...] = (1, 64),
    seed: int = 0,
    latent: LatentContract | None = None,
) -> dict[str, float]:
    """Max |ONNX Runtime (CPU) − torch| per graph over `n` inputs, run at each batch size.

    Inputs look like real ones: z from the latent prior (`latent`; None: N(0, I) of the manifest's size) for the
    generator, G(z) for the image graphs. torch runs the caller's modules in eval mode (spectral norm unfolded), so
    this also checks the export-time rewrites.
    """
    bundle: Bundle = load_bundle(bundle_dir)
    latent = latent or LatentContract(bundle.manifest.latent.size)
    z = latent.sample(n, torch.Generator().manual_seed(seed))
    modules = {"invert": inverter, "generator": generator, "discriminator_features": features}
    with _eval_mode(generator, features, inverter):
        device = _device(generator)
        images = generator(z.to(device))
        inputs = {"invert": images, "generator": z.to(device), "discriminator_features": images}
        expected = {graph: modules[graph](inputs[graph]).cpu().numpy() for graph in GRAPH_CONTRACT}
    errors: dict[str, float] = {}
    for graph in GRAPH_CONTRACT:
        session = bundle.open_graph(graph, providers=["CPUExecutionProvider"])
        array = inputs[graph].cpu().numpy().astype(np.float32)
        worst = 0.0
        for batch in batch_sizes:
            outputs = [session(array[i : i + batch]) for i in range(0, n, batch)]
            worst = max(worst, float(np.abs(np.concatenate(outputs) - expected[graph]).max()))
        errors[graph] = worst
    return errors


__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "EXPORTER_ENV",
    "Exporter",
    "FusedInverter",
    "check_parity",
    "default_exporter",
    "export_bundle",
    "export_graph",
    "exporter_description",
    "latent_prior",
    "save_refinement_generator",
]
