"""The eval CLI over a shipped bundle: `python -m training eval --bundle models/fashion-mnist --methods dfi,dfi_opt`.

Each repeat scores a disjoint block of n unseen test images (repeat r takes images [r·n, (r+1)·n) of the split),
so mean ± std over repeats is the spread between image sets, as the papers' "5 repeats of 1000 images".
Methods from a bundle alone: `dfi` (invert.onnx), `dfi_opt` (50 Adam steps of eq. 2 from ẑ, torch on
generator.safetensors) and `opt` (the same steps from z ~ N(0, I): the optimisation-only baseline of IJCV Table 1).
Metrics (dfi_core.metrics, shared with the service's jobs, accumulated by training/evaluation/scoring.py): PSNR,
SSIM, MS-SSIM, class-consistency (the bundle's classifier.onnx) and, with `--classifier`, the domain FD of
reconstructions vs the real images in that classifier's penultimate features. LPIPS / FID / IS are reported as
unavailable with the reason (no pretrained weights here).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dfi_core import metrics
from dfi_core.bundle import Bundle, load_bundle
from dfi_core.datasets import ImageSplit, load_split
from dfi_core.preprocessing import to_model_range, to_uint8
from dfi_core.refinement import load_bundle_generator, refine
from training.evaluation.scoring import Reconstructor, Summary, score_reconstructions

METHODS = ("dfi", "dfi_opt", "opt")
REPEAT_METRICS = ("psnr", "ssim", "ms_ssim")  # the image metrics of every block; + class_consistency with a judge


def check_request(methods: list[str], n: int, repeats: int, split_size: int) -> None:
    """Cross-field errors before any work starts."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; a bundle offers {list(METHODS)}")
    if n < 2 or repeats < 1:
        raise ValueError(f"need n ≥ 2 and repeats ≥ 1, got n={n}, repeats={repeats}")
    if n * repeats > split_size:
        raise ValueError(f"n × repeats = {n * repeats} > the {split_size} test images: repeats must be disjoint")


def prior_sample(prior: Any, n: int, size: int, seed: int) -> torch.Tensor:
    """n latents from a manifest's prior (`latent.prior`), drawn from a CPU generator seeded `seed`."""
    rng = torch.Generator().manual_seed(seed)
    if prior.distribution == "uniform":
        return prior.low + (prior.high - prior.low) * torch.rand(n, size, generator=rng)
    return prior.mean + prior.std * torch.randn(n, size, generator=rng)


def _latents(method: str, x: np.ndarray, invert, G, steps: int, seed: int, latent: Any) -> np.ndarray:
    if method == "dfi":
        return invert(x)
    # opt: the optimisation baseline from z ~ the prior of the manifest's latent contract (any G, not only the zoo's)
    z0 = torch.from_numpy(invert(x)) if method == "dfi_opt" else prior_sample(latent.prior, len(x), latent.size, seed)
    z, _ = refine(G, torch.from_numpy(x), z0, steps=steps, method="adam")
    return z.numpy()


def score_repeats(
    data: ImageSplit,
    reconstructors: dict[str, Reconstructor],
    n: int,
    repeats: int,
    judge: Any = None,
    features: torch.nn.Module | None = None,
    batch: int = 250,
    n_examples: int = 8,
) -> tuple[dict[str, list[dict[str, float]]], dict[str, dict[str, Summary]], dict[str, np.ndarray]]:
    """Score each reconstructor on `repeats` disjoint blocks of n test images (repeat r: images [r·n, (r+1)·n)).

    Per block (`score_reconstructions`): PSNR, SSIM, MS-SSIM, class-consistency (with `judge`, an ONNX
    classifier) and the FD of the reconstructions vs the real block in `features`' penultimate space. Returns
    (per-repeat means, the table: each metric's summary {"mean", "std", "n"} over the repeats' means (n = repeats),
    the first `n_examples` inputs and reconstructions of repeat 0). The reconstructor gets the index of the batch's
    first image within the split (a seed offset for random starts)."""
    from training.evaluation.fd import frechet_distance_of_features

    per_repeat: dict[str, list[dict[str, float]]] = {m: [] for m in reconstructors}
    examples: dict[str, np.ndarray] = {}
    for r in tqdm(range(repeats), desc="repeats"):
        x_all = to_model_range(data.images[r * n : (r + 1) * n])
        labels = data.labels[r * n : (r + 1) * n]
        real_f = None
        if features is not None:
            with torch.no_grad():
                real_f = features.features(torch.from_numpy(x_all)).numpy()
        for method, reconstruct in reconstructors.items():
            scores, all_out = score_reconstructions(reconstruct, x_all, labels, judge, REPEAT_METRICS, batch, r * n)
            summary = {k: s["mean"] for k, s in scores.summary().items()}
            if features is not None:
                with torch.no_grad():
                    fake_f = features.features(torch.from_numpy(all_out)).numpy()
                summary["fd"] = frechet_distance_of_features(real_f, fake_f)
            per_repeat[method].append(summary)
            if r == 0:
                examples[method] = all_out[:n_examples]
        if r == 0:
            examples["input"] = x_all[:n_examples]
    table = {m: {k: metrics.summarize([s[k] for s in rows]) for k in rows[0]} for m, rows in per_repeat.items()}
    return per_repeat, table, examples


def open_reconstructors(
    bundle: Bundle, methods: list[str], refine_steps: int = 50, seed: int = 0
) -> tuple[dict[str, Reconstructor], Callable[[np.ndarray], np.ndarray] | None]:
    """The bundle's reconstructor of each method (ONNX graphs; refinement in torch on generator.safetensors) and
    its class-consistency judge (classifier.onnx, None when the bundle has none)."""
    invert = bundle.open_graph("invert", providers=["CPUExecutionProvider"])
    generator = bundle.open_graph("generator", providers=["CPUExecutionProvider"])
    judge = (
        bundle.open_graph("classifier", providers=["CPUExecutionProvider"])
        if bundle.manifest.graphs.classifier
        else None
    )
    G = load_bundle_generator(bundle).module
    reconstructors = {
        method: (lambda x, offset, method=method: generator(_latents(method, x, invert, G, refine_steps, seed + offset,
                                                                       bundle.manifest.latent)
                                                             .astype(np.float32)))
        for method in methods
    }  # fmt: skip
    return reconstructors, judge


def evaluate_bundle(
    bundle_dir: Path,
    methods: list[str],
    n: int = 1000,
    repeats: int = 5,
    refine_steps: int = 50,
    classifier_checkpoint: Path | None = None,
    batch: int = 250,
    seed: int = 0,
) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir)
    data = load_split(bundle.manifest.dataset.name, "test")
    check_request(methods, n, repeats, len(data.images))
    reconstructors, judge = open_reconstructors(bundle, methods, refine_steps, seed)
    features = None
    if classifier_checkpoint is not None:
        from training.classifiers.classifier import load_classifier

        features = load_classifier(classifier_checkpoint)[0]
    per_repeat, table, examples = score_repeats(data, reconstructors, n, repeats, judge, features, batch, n_examples=8)
    return {
        "bundle": bundle.name,
        "dataset": bundle.manifest.dataset.name,
        "split": "test",
        "n": n,
        "repeats": repeats,
        "refine_steps": refine_steps,
        "refine_method": "adam",
        "seed": seed,
        "value_range": [0, 1],
        "data_range": 1.0,
        "ms_ssim_scales": metrics.ms_ssim_scales(bundle.manifest.image.height),
        "implementations": {
            "ssim": f"torchmetrics {version('torchmetrics')}",
            "ms_ssim": f"torchmetrics {version('torchmetrics')}",
            "graphs": f"onnxruntime {version('onnxruntime')}",
            "refinement": f"torch {torch.__version__}",
            "fd_features": str(classifier_checkpoint) if classifier_checkpoint else None,
        },
        "unavailable": metrics.UNAVAILABLE,
        "machine": platform.platform(),
        "table": table,
        "per_repeat": per_repeat,
        "_examples": examples,
    }


def write_report(result: dict[str, Any], out: Path) -> tuple[Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    examples = result.pop("_examples")
    name = result["bundle"]
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    keys = [
        k for k in ("psnr", "ssim", "ms_ssim", "class_consistency", "fd") if k in next(iter(result["table"].values()))
    ]
    lines = [f"| method | {' | '.join(keys)} |", "|---" * (len(keys) + 1) + "|"]
    for method, row in result["table"].items():
        lines.append(f"| {method} | " + " | ".join(f"{row[k]['mean']:.4f} ± {row[k]['std']:.4f}" for k in keys) + " |")
    md_path = out / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    from PIL import Image

    rows = [to_uint8(examples[k]) for k in ["input", *result["table"]]]
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    png_path = out / f"{name}.png"
    Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).resize(
        (grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST
    ).save(png_path)
    return json_path, md_path, png_path
