"""How fast does latent refinement (IJCV eq. 2) converge from a bundle's DFI start? Issue 3's DFI^opt target.

Two probes on the first N test images of the bundle's data set, starting from ẑ = invert.onnx(x), G rebuilt from
generator.safetensors, Adam on the summed per-image MSE (each image refined as if alone):
  1. PSNR after k steps at the default learning rate (k up to 400): the ceiling that more steps would reach;
  2. PSNR after 50 steps for other constant learning rates and for decayed schedules.

    python scripts/refine_convergence.py --bundle models/fashion-mnist --n 250 > docs/results/refine-convergence.md
"""

from __future__ import annotations

import argparse
import math

import torch

from dfi_core import metrics
from dfi_core.bundle import load_bundle
from dfi_core.datasets import load_split
from dfi_core.preprocessing import to_model_range
from dfi_core.refinement import DEFAULT_LR, load_bundle_generator, per_sample_loss, refine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="models/fashion-mnist")
    parser.add_argument("--n", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = load_bundle(args.bundle)
    x = to_model_range(load_split(bundle.manifest.dataset.name, "test").images[: args.n])
    target = torch.from_numpy(x)
    z0 = torch.from_numpy(bundle.open_graph("invert", providers=["CPUExecutionProvider"])(x))
    G = load_bundle_generator(bundle).module

    def psnr(z: torch.Tensor) -> float:  # mean over images, [0, 1] images, data_range 1: as the evaluation
        with torch.no_grad():
            return float(metrics.psnr(G(z).numpy(), x).mean())

    def psnr_after(steps: int, lr: float, report: tuple[int, ...] = ()) -> dict[int, float]:
        """The evaluation's own refinement (dfi_core.refinement.refine), scored after each step in `report`."""
        scores: dict[int, float] = {}

        def record(step: int, z: torch.Tensor, _loss: float) -> None:
            if step in report:
                scores[step] = psnr(z)

        z, _ = refine(G, target, z0, steps=steps, method="adam", lr=lr, callback=record)
        return {**scores, steps: psnr(z)}

    def psnr_scheduled(lr: float, schedule: str, beta1: float, steps: int = 50) -> float:
        """Adam variants refine() does not offer (decayed lr, another β1); the same loss and update otherwise."""
        w = z0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=lr, betas=(beta1, 0.999))
        for k in range(steps):
            if schedule != "constant":
                factor = 0.5 * (1 + math.cos(math.pi * k / steps)) if schedule == "cosine" else 1 - k / steps
                optimizer.param_groups[0]["lr"] = lr * factor
            (w.grad,) = torch.autograd.grad(per_sample_loss(G, w, target).sum(), [w])
            optimizer.step()
        return psnr(w.detach())

    lr = DEFAULT_LR["adam"]
    print(f"# Refinement convergence: {bundle.name}, first {args.n} test images\n")
    print(f"Start (DFI alone): {psnr(z0):.2f} dB\n")
    print(f"| Adam steps (lr {lr}) | PSNR |\n|---|---|")
    for k, value in psnr_after(400, lr, report=(25, 50, 100, 200)).items():
        print(f"| {k} | {value:.2f} |")
    print("\n| 50 steps: lr, schedule, β1 | PSNR |\n|---|---|")
    for rate in (0.03, 0.05, 0.07, 0.1, 0.13):
        print(f"| {rate}, constant, 0.9 | {psnr_after(50, rate)[50]:.2f} |")
    for rate, schedule, beta1 in [(0.1, "cosine", 0.9), (0.1, "linear", 0.9), (0.05, "constant", 0.5)]:
        print(f"| {rate}, {schedule}, {beta1} | {psnr_scheduled(rate, schedule, beta1):.2f} |")


if __name__ == "__main__":
    main()
