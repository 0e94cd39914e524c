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

from dfi_core.bundle import load_bundle
from dfi_core.datasets import load_split
from dfi_core.preprocessing import to_model_range
from dfi_core.refinement import DEFAULT_LR, load_refinement_generator, per_sample_loss


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
    G = load_refinement_generator(bundle.path(bundle.manifest.refinement.file))

    def psnr(z: torch.Tensor) -> float:  # mean over images of PSNR on [0, 1] (data_range 1), as the evaluation
        with torch.no_grad():
            mse = ((G(z) - target) / 2).pow(2).flatten(1).mean(1)
        return float((10 * torch.log10(1 / mse)).mean())

    def refine(lr: float, steps: int, schedule: str = "constant", beta1: float = 0.9, report=()) -> dict[int, float]:
        w = z0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=lr, betas=(beta1, 0.999))
        scores = {}
        for k in range(steps):
            if schedule != "constant":
                factor = 0.5 * (1 + math.cos(math.pi * k / steps)) if schedule == "cosine" else 1 - k / steps
                optimizer.param_groups[0]["lr"] = lr * factor
            loss = per_sample_loss(G, w, target).sum()
            (w.grad,) = torch.autograd.grad(loss, [w])
            optimizer.step()
            if k + 1 in report or k + 1 == steps:
                scores[k + 1] = psnr(w.detach())
        return scores

    lr = DEFAULT_LR["adam"]
    print(f"# Refinement convergence: {bundle.name}, first {args.n} test images\n")
    print(f"Start (DFI alone): {psnr(z0):.2f} dB\n")
    print(f"| Adam steps (lr {lr}) | PSNR |\n|---|---|")
    for k, value in refine(lr, 400, report=(25, 50, 100, 200, 400)).items():
        print(f"| {k} | {value:.2f} |")
    print("\n| 50 steps: lr, schedule, β1 | PSNR |\n|---|---|")
    settings = [(rate, "constant", 0.9) for rate in (0.03, 0.05, 0.07, 0.1, 0.13)]
    settings += [(0.1, "cosine", 0.9), (0.1, "linear", 0.9), (0.05, "constant", 0.5)]
    for rate, schedule, beta1 in settings:
        print(f"| {rate}, {schedule}, {beta1} | {refine(rate, 50, schedule, beta1)[50]:.2f} |")


if __name__ == "__main__":
    main()
