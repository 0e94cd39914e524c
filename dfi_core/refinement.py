"""Latent refinement (IJCV eq. 2) and rebuilding a bundle's G for it; the torch half of the bundle format.

A bundle's `generator.safetensors` is G's state_dict plus its `GeneratorConfig` as JSON (the architecture is
`dfi_core.generator`); ONNX cannot give the gradients that refinement needs, so whoever refines — the training
package's evaluation and the service (API or worker) when torch is installed — rebuilds G from that file with
`load_refinement_generator` and runs `refine`. Both import this module; the service never imports `training`.
Needs torch: `dfi_core/__init__` does not import it, so the ONNX-only service image works without torch.

Shapes: z [N, z_dim] float32, prior N(0, I); image [N, C, H, W] float32, [-1, +1], H = W in {28, 32, 64}.
Refinement: self-contained (torch only): G is any frozen module mapping [N, z_dim] → [N, ...]. The paper runs 50
iterations (sec. 4, after Zhu et al. 2016) of Adam or L-BFGS-B; here L-BFGS is torch's (strong Wolfe line
search), and the "-B" box constraint is the optional tanh reparameterisation `bound`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from dfi_core.bundle import REFINEMENT_FORMAT
from dfi_core.generator import Generator, GeneratorConfig

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
