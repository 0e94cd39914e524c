"""Latent refinement (IJCV eq. 2) and a differentiable G for it from any bundle; the torch half of the bundle format.

ONNX Runtime gives no gradients, so whoever refines — the training package's evaluation and the service (API or
worker) when torch is installed — needs G as a torch module. `load_bundle_generator(bundle)` gives one for ANY
bundle, from one of two sources, and says in the returned `RefinementGenerator` which one and why:
  * `generator.onnx` converted by onnx2torch (the graph is loaded with `onnx.load(path)`, so weights kept as ONNX
    external data in the bundle's safetensors files resolve) — the one source every bundle has, including one
    made from a user's own GAN, whose architecture this package does not know;
  * `generator.safetensors` (G's state_dict + its `GeneratorConfig` as JSON, architecture `dfi_core.generator`),
    when the manifest's optional `refinement` block names it; `load_refinement_generator` rebuilds it.
When a bundle has both, both are built once at load and checked against ONNX Runtime on a small fixed batch
(`PARITY_ATOL`), and the safetensors G is used (measured faster at batch 1, `load_bundle_generator`). An op
onnx2torch cannot convert raises `UnsupportedOpError` naming it: inversion (ONNX Runtime) is unaffected, only
refinement is refused.
Both the training package and the service import this module; the service never imports `training`.
Needs torch: `dfi_core/__init__` does not import it, so the ONNX-only service image works without torch.

Shapes: z [N, z_dim] float32, prior N(0, I); image [N, C, H, W] float32, [-1, +1], H = W in {28, 32, 64}.
Refinement: self-contained (torch only): G is any frozen module mapping [N, z_dim] → [N, ...]. The paper runs 50
iterations (sec. 4, after Zhu et al. 2016) of Adam or L-BFGS-B; here L-BFGS is torch's (strong Wolfe line
search), and the "-B" box constraint is the optional tanh reparameterisation `bound`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from dfi_core.bundle import REFINEMENT_FORMAT, Bundle
from dfi_core.generator import Generator, GeneratorConfig

if TYPE_CHECKING:
    import onnx

METHODS = ("adam", "lbfgs")
DEFAULT_LR = {
    # Adam moves each coordinate by about lr per step: 0.05 × 50 steps lets a coordinate travel ~2.5, the
    # width of the N(0, I) prior, while the normalised step stays small enough not to jump between modes.
    "adam": 0.05,
    # L-BFGS takes quasi-Newton steps; lr scales them and 1 is the natural unit with a line search.
    "lbfgs": 1.0,
}
# tanh saturates to exactly ±1 in float32 for |w| > 9; shrinking by 1e-6 (≫ float32's 6e-8 relative rounding)
# keeps bound·tanh(w) strictly inside (−bound, bound) whatever w becomes.
_INSIDE = 1.0 - 1e-6


def per_sample_loss(G: nn.Module, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[N]: mean squared error of G(z_i) against x_i over all of x_i's values (eq. 2 with d = squared L2)."""
    return (G(z) - x).pow(2).flatten(1).mean(1)


def _to_w(z0: torch.Tensor, bound: float | None) -> torch.Tensor:
    if bound is None:
        return z0.detach().clone()
    scale = bound * _INSIDE
    return torch.atanh((z0.detach() / scale).clamp(-_INSIDE, _INSIDE))


def _to_z(w: torch.Tensor, bound: float | None) -> torch.Tensor:
    return w if bound is None else bound * _INSIDE * torch.tanh(w)


def refine(
    G: nn.Module,
    x: torch.Tensor,
    z0: torch.Tensor | None = None,
    steps: int = 50,
    method: str = "adam",
    lr: float | None = None,
    bound: float | None = None,
    callback: Callable[[int, torch.Tensor, float], None] | None = None,
    generator: torch.Generator | None = None,
    z_dim: int | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """Refine latents so that G(z) reconstructs x (eq. 2). Returns (z [N, z_dim], history).

    x: [N, ...] targets on G's device. z0: [N, z_dim] start (an inverter's ẑ); None → N(0, I) drawn from
    `generator` on the CPU (then `z_dim` is required). `bound`: optimise w with z = bound·tanh(w), so every
    coordinate stays strictly inside (−bound, bound). `callback(step, z, mean_loss)` runs after step `step`
    (1-based) with the new z and the mean loss of the iterate that step started from.
    history[k] is the mean per-sample loss at iterate k: steps + 1 values, history[0] at z0, history[-1] at the
    returned z.

    G must be in eval mode: in train mode batch norm would couple the samples of the batch. The per-sample losses
    are summed, so with Adam (element-wise updates) each sample is refined exactly as if it were alone.
    L-BFGS (`steps` outer iterations, one L-BFGS iteration each) minimises the summed loss as one problem: its
    curvature history and line-search step length are shared, which couples the samples of a batch.
    """
    if method not in METHODS:
        raise ValueError(f"refinement method must be one of {METHODS}, got {method!r}")
    if G.training:
        raise ValueError("G must be in eval mode for refinement (train-mode batch norm couples the batch)")
    if steps < 0 or (bound is not None and bound <= 0):
        raise ValueError(f"need steps ≥ 0 and bound > 0, got steps={steps}, bound={bound}")
    if z0 is None:
        if z_dim is None:
            raise ValueError("refine from a random start needs z_dim")
        z0 = torch.randn(x.shape[0], z_dim, generator=generator).to(x.device)
    if z0.shape[0] != x.shape[0]:
        raise ValueError(f"z0 has {z0.shape[0]} rows but x has {x.shape[0]} samples")
    lr = DEFAULT_LR[method] if lr is None else lr
    w = _to_w(z0, bound).requires_grad_(True)
    history: list[float] = []

    def closure() -> torch.Tensor:
        # autograd.grad, not backward(): gradients reach w only, never accumulate in G's parameters.
        loss = per_sample_loss(G, _to_z(w, bound), x)
        total = loss.sum()
        (w.grad,) = torch.autograd.grad(total, [w])
        return total.detach()

    with torch.enable_grad():  # callers may sit inside torch.no_grad() (evaluation)
        if method == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam([w], lr=lr)
        else:
            # max_iter=1: one L-BFGS iteration per step() so `steps` counts iterations and the callback sees each.
            optimizer = torch.optim.LBFGS([w], lr=lr, max_iter=1, history_size=10, line_search_fn="strong_wolfe")
        for step in range(steps):
            if method == "adam":
                start_loss = closure()
                optimizer.step()
            else:
                start_loss = optimizer.step(closure)  # L-BFGS returns the loss at the iterate it started from
            history.append(float(start_loss) / x.shape[0])
            if callback is not None:
                callback(step + 1, _to_z(w.detach(), bound), history[-1])
    z = _to_z(w.detach(), bound)
    with torch.no_grad():
        history.append(per_sample_loss(G, z, x).mean().item())
    return z, history


def load_refinement_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Rebuild G (eval mode, no grad on its weights) from a bundle's generator.safetensors alone."""
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if meta.get("format") != REFINEMENT_FORMAT:
        raise ValueError(f"{path} is not a DFI refinement generator (format {meta.get('format')!r})")
    values = json.loads(meta["generator_config"])
    values["shape"] = tuple(values["shape"])
    generator = Generator(GeneratorConfig(**values))
    generator.load_state_dict(load_file(str(path)))
    return generator.to(device).eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------------
# A differentiable G for any bundle: generator.onnx via onnx2torch, or generator.safetensors + the zoo architecture.

Source = Literal["onnx2torch", "safetensors"]
SOURCES: tuple[Source, ...] = ("onnx2torch", "safetensors")
# Max |torch G(z) − ONNX Runtime G(z)| allowed at load, on outputs in [-1, +1]. Both run the same float32 weights,
# but in different kernels whose summation orders differ (MatMul, ConvTranspose), so they agree to float32
# rounding, not bit for bit: measured 3e-6 (Fashion-MNIST) and 6e-6 (emoji) on the shipped bundles. 1e-4 is ~20×
# that and ~80× below one 8-bit grey level (2/255 ≈ 7.8e-3), so it passes rounding and fails any real
# disagreement (a wrong weight, a dropped batch norm, a train-mode statistic), which moves outputs by ≫ 1e-2.
PARITY_ATOL = 1e-4
PARITY_BATCH = 4  # rows of the fixed check batch: enough to catch a batch-coupled op, cheap at load
PARITY_SEED = 0
# What the source choice rests on: `benchmarks/bench_refinement.py` times both on the shipped bundles side by side
# (50 Adam steps of eq. 2) and writes the ratios to this file. The safetensors G is kept only where it is faster.
BENCHMARK_FILE = "benchmarks/results/refinement_cpu.json"
# Ops whose onnx2torch converters call torchvision (detection ops; no generator has them). When torchvision is
# absent or cannot load next to CPU torch (PyPI's torchvision wheels are CUDA builds: "operator torchvision::nms
# does not exist"), onnx2torch is imported with a placeholder torchvision and these ops count as unconvertible.
_TORCHVISION_OPS = frozenset({"NonMaxSuppression", "RoiAlign"})


class RefinementUnavailable(RuntimeError):
    """Refinement cannot run for this bundle; `reason` says why (inversion without refinement is unaffected)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedOpError(RefinementUnavailable):
    """generator.onnx holds ops onnx2torch cannot convert; `ops` names them ("Shrink (opset 17)")."""

    def __init__(self, reason: str, ops: list[str]) -> None:
        super().__init__(reason)
        self.ops = ops


class ParityError(RefinementUnavailable):
    """The torch G and ONNX Runtime's generator.onnx disagree beyond PARITY_ATOL: the bundle is inconsistent."""


@dataclass(frozen=True)
class RefinementGenerator:
    """G for refinement: `module` maps z [N, |z|] → image [N, C, H, W], eval mode, no grad on its weights.

    source: where it came from; reason: why that source (one sentence, for logs and /readyz-style reports);
    parity: max |Δ| on the fixed check batch, keyed "onnx2torch_vs_onnxruntime", "safetensors_vs_onnxruntime"
    and, when both were built, "onnx2torch_vs_safetensors"; load_s: seconds each source took to build.
    """

    module: nn.Module
    source: Source
    reason: str
    parity: dict[str, float] = field(default_factory=dict)
    load_s: dict[str, float] = field(default_factory=dict)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(z)


def _raise_needs_torchvision(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("this ONNX op needs a working torchvision (not installed, or a build that does not fit torch)")


@contextlib.contextmanager
def _placeholder_torchvision() -> Iterator[None]:
    """sys.modules holds a stand-in torchvision while onnx2torch imports (its NMS and RoiAlign modules import it at
    module level), then the previous entries come back: nothing else in the process sees the stand-in."""
    names = ("torchvision", "torchvision.ops")
    saved = {name: sys.modules.get(name) for name in names}
    vision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.box_convert = ops.roi_align = _raise_needs_torchvision  # type: ignore[attr-defined]
    vision.ops = ops  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": vision, "torchvision.ops": ops})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@functools.cache
def _onnx2torch() -> tuple[types.ModuleType, frozenset[str]]:
    """(the onnx2torch module, ops it cannot convert in this process beyond its registry)."""
    if importlib.util.find_spec("onnx2torch") is None or importlib.util.find_spec("onnx") is None:
        raise RefinementUnavailable(
            "refinement from generator.onnx needs onnx2torch and onnx in this process (the `worker` extra, then "
            "`pip install --no-deps onnx2torch==1.5.15`)"
        )
    try:
        import torchvision.ops  # noqa: F401  (only to learn whether it loads)
    except Exception:  # absent (ImportError) or a CUDA build next to CPU torch (RuntimeError)
        with _placeholder_torchvision():
            import onnx2torch
        return onnx2torch, _TORCHVISION_OPS
    import onnx2torch

    return onnx2torch, frozenset()


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """The ops of `model`'s graph that this process's onnx2torch has no converter for, as "Op (opset N)" (sorted,
    each once; a custom domain is written "domain::Op"). Empty: every node converts."""
    onnx2torch, missing = _onnx2torch()
    from onnx2torch.node_converters import get_converter

    opsets = {entry.domain: entry.version for entry in model.opset_import}
    problems: set[str] = set()
    for node in model.graph.node:
        name = node.op_type if not node.domain else f"{node.domain}::{node.op_type}"
        version = opsets.get(node.domain)
        if version is None:
            problems.add(f"{name} (domain {node.domain!r} not imported by the graph)")
            continue
        try:
            get_converter(operation_type=node.op_type, version=version, domain=node.domain)
        except NotImplementedError:
            problems.add(f"{name} (opset {version})")
            continue
        if not node.domain and node.op_type in missing:
            problems.add(f"{name} (opset {version}; needs a torchvision that loads with this torch)")
    return sorted(problems)


def _converter_name() -> str:
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return f"onnx2torch {version('onnx2torch')}"
    return "onnx2torch"


def convert_onnx_generator(path: str | Path, label: str | None = None) -> nn.Module:
    """G from a generator ONNX graph via onnx2torch: eval mode, no grad on its weights, gradients flow to z.

    `onnx.load(path)` reads external-data weights from the files next to the graph (the shipped bundles keep G's
    weights in generator.safetensors, `manifest.exporter.shared_weights`). Raises `UnsupportedOpError` naming every
    op that cannot be converted, before converting anything.
    """
    onnx2torch, _ = _onnx2torch()
    import onnx

    label = label or str(path)
    model = onnx.load(str(path))
    ops = unsupported_ops(model)
    if ops:
        raise UnsupportedOpError(
            f"{label}: {_converter_name()} cannot convert {', '.join(ops)}, so refinement (refine_steps > 0) is not "
            "available for this model; inversion without refinement works",
            ops,
        )
    try:
        module = onnx2torch.convert(model)
    except NotImplementedError as error:  # a converter that refuses one attribute setting (e.g. a Resize mode)
        raise UnsupportedOpError(
            f"{label}: {_converter_name()} cannot convert the graph: {error}", [str(error)]
        ) from None
    return module.eval().requires_grad_(False)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _parity_batch(z_dim: int) -> torch.Tensor:
    return torch.randn(PARITY_BATCH, z_dim, generator=torch.Generator().manual_seed(PARITY_SEED))


def load_bundle_generator(
    bundle: Bundle, device: str | torch.device = "cpu", prefer: Literal["auto", "onnx2torch", "safetensors"] = "auto"
) -> RefinementGenerator:
    """A differentiable G for `bundle`'s refinement (eq. 2), whatever made the bundle.

    Sources: generator.onnx via onnx2torch (every bundle), generator.safetensors with `dfi_core.generator`'s
    architecture (only when the manifest's `refinement` block names it). Every source built is checked once on a
    fixed batch (PARITY_BATCH rows of N(0, I), seed PARITY_SEED) against ONNX Runtime on generator.onnx, and the two
    against each other, to PARITY_ATOL; a disagreement raises `ParityError`.

    prefer="auto" builds every source the bundle has and uses
      * generator.safetensors where the manifest names it: measured faster than the onnx2torch G at batch 1 (the
        API's one image per request: 2–4 %, beyond the run's noise — the converted graph dispatches each ONNX node
        as its own module) and tied at batch 16 and 64 (BENCHMARK_FILE), and it keeps the refined latents of the
        shipped bundles bit-identical to the releases before onnx2torch. If onnx2torch cannot convert the graph
        here, the reason says so and the safetensors G is used all the same;
      * otherwise generator.onnx via onnx2torch — the only way for a bundle made from a user's own GAN; an op it
        cannot convert raises `UnsupportedOpError` (the service answers refine_steps > 0 with a 400 naming it).
    prefer="onnx2torch" | "safetensors": that source alone, or an error (benchmarks, tests).
    """
    if prefer not in ("auto", *SOURCES):
        raise ValueError(f"prefer must be 'auto' or one of {SOURCES}, got {prefer!r}")
    manifest = bundle.manifest
    onnx_path = bundle.graph_path("generator")
    if prefer == "safetensors" and manifest.refinement is None:
        raise RefinementUnavailable(f"bundle {bundle.name!r} has no generator.safetensors (no `refinement` block)")
    built: dict[Source, nn.Module] = {}
    load_s: dict[str, float] = {}
    if manifest.refinement is not None and prefer in ("auto", "safetensors"):
        start = time.perf_counter()
        built["safetensors"] = load_refinement_generator(bundle.path(manifest.refinement.file))
        load_s["safetensors"] = time.perf_counter() - start
    conversion: RefinementUnavailable | None = None
    if prefer in ("auto", "onnx2torch"):
        start = time.perf_counter()
        try:
            built["onnx2torch"] = convert_onnx_generator(onnx_path, f"bundle {bundle.name!r}: {onnx_path.name}")
        except RefinementUnavailable as error:
            if "safetensors" not in built:
                raise
            conversion = error
        load_s["onnx2torch"] = time.perf_counter() - start
    parity = _check_parity(bundle, onnx_path, built)
    source: Source = "safetensors" if "safetensors" in built else "onnx2torch"
    if prefer != "auto":
        reason = f"{source} G as asked (prefer={prefer!r})"
    elif source == "safetensors":
        also = (f"generator.onnx cannot be converted here: {conversion.reason}" if conversion is not None
                else "the onnx2torch G of generator.onnx agrees with it")  # fmt: skip
        reason = (f"generator.safetensors + dfi_core.generator: faster than the onnx2torch G at batch 1 and tied "
                  f"above ({BENCHMARK_FILE}); parity with generator.onnx checked; {also}")  # fmt: skip
    else:
        reason = "generator.onnx via onnx2torch: the bundle has no generator.safetensors (no `refinement` block)"
    module = built[source].to(device)
    return RefinementGenerator(module=module, source=source, reason=reason, parity=parity, load_s=load_s)


def _check_parity(bundle: Bundle, onnx_path: Path, built: dict[Source, nn.Module]) -> dict[str, float]:
    """Max |Δ| of each built G against ONNX Runtime (and against each other) on the fixed batch; ParityError above
    PARITY_ATOL. Runs on the CPU before any move to a device (TF32 on a GPU would blur the comparison)."""
    import onnxruntime as ort

    z = _parity_batch(bundle.manifest.latent.size)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {session.get_inputs()[0].name: z.numpy()})[0]
    with torch.no_grad():
        outputs = {source: module(z).numpy() for source, module in built.items()}
    parity = {f"{source}_vs_onnxruntime": _max_abs(out, reference) for source, out in outputs.items()}
    if len(outputs) == 2:
        parity["onnx2torch_vs_safetensors"] = _max_abs(outputs["onnx2torch"], outputs["safetensors"])
    bad = {key: value for key, value in parity.items() if not value <= PARITY_ATOL}
    if bad:
        shapes = {source: list(out.shape) for source, out in outputs.items()} | {"onnxruntime": list(reference.shape)}
        raise ParityError(
            f"bundle {bundle.name!r}: the torch G disagrees with generator.onnx: max |Δ| {bad} > {PARITY_ATOL} on "
            f"{PARITY_BATCH} fixed latents (output shapes {shapes}); refinement would optimise a different G"
        )
    return parity
