"""Scores of the cyclic baselines on the protocol of training/evaluation/bundle.py, next to the shipped DFI bundle.

Reconstruction x → G(E(x)) (VAE: G(μ)) on `repeats` disjoint blocks of n Fashion-MNIST test images (repeat r takes
images [r·n, (r+1)·n)): PSNR, SSIM, MS-SSIM (dfi_core.metrics, [−1, 1] images scored on [0, 1]), class-consistency
by the bundle's classifier.onnx (the judge of the DFI rows), FD of reconstructions vs the real images of the repeat in
the classifier checkpoint's penultimate features. The bundle's `dfi` (invert.onnx → generator.onnx) is scored by the
same code on the same images, as a check against docs/results/README.md.
Sample quality: FD of `n_samples` G(z) vs the first `n_samples` real test images in the same features, as
training/evaluation/samples.py's `evaluate_samples` (the zoo's "sample FD"), with its train-vs-test floor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfi_core import metrics
from dfi_core.datasets import load_split
from dfi_core.preprocessing import to_model_range, to_uint8
from training.classifiers.classifier import load_classifier
from training.core.checkpoint import read_metadata
from training.core.runs import RunDir
from training.cyclic.model import load_cyclic
from training.evaluation.bundle import score_repeats
from training.evaluation.fd import frechet_distance_of_features
from training.evaluation.samples import classifier_features

ORDER = ("vae", "ali", "alice", "dfi")


def _reconstructors(runs: Path, bundle_dir: Path | None) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """name → (x [N,C,H,W] float32 numpy → reconstruction numpy); name → info; the judge graph (or None)."""
    recon: dict[str, Any] = {}
    info: dict[str, Any] = {}
    generators: dict[str, Any] = {}
    for run in sorted(RunDir(p) for p in runs.iterdir() if RunDir(p).checkpoints.is_dir()):
        path = run.latest_checkpoint()
        modules, cfg = load_cyclic(path)
        E, G = modules["E"], modules["G"]

        def apply(x: np.ndarray, E=E, G=G) -> np.ndarray:
            with torch.no_grad():
                return G(E(torch.from_numpy(x))).numpy()

        if cfg.model in recon:
            raise ValueError(f"two runs of model {cfg.model} under {runs}")
        recon[cfg.model] = apply
        generators[cfg.model] = (G, cfg.z_dim)
        meta = read_metadata(path)
        info[cfg.model] = {
            "checkpoint": str(path),
            "steps": meta["step"],
            "train_seconds": meta["extra"].get("seconds"),
            "config": meta["config"],
        }
    judge = None
    if bundle_dir is not None:
        from dfi_core.bundle import load_bundle

        bundle = load_bundle(bundle_dir)
        kw = {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1}
        invert, generator = bundle.open_graph("invert", **kw), bundle.open_graph("generator", **kw)
        recon["dfi"] = lambda x: generator(invert(x).astype(np.float32))
        info["dfi"] = {"bundle": str(bundle_dir), "graphs": "invert.onnx → generator.onnx"}
        if bundle.manifest.graphs.classifier:
            judge = bundle.open_graph("classifier", **kw)
    return {k: recon[k] for k in ORDER if k in recon} | recon, info | {"_generators": generators}, judge


@torch.no_grad()
def evaluate_cyclic_runs(
    runs: str | Path,
    classifier_path: str | Path,
    bundle_dir: str | Path | None = "models/fashion-mnist",
    n: int = 1000,
    repeats: int = 5,
    n_samples: int = 10_000,
    seed: int = 0,
    batch: int = 250,
    data_name: str = "fashion-mnist",
) -> dict[str, Any]:
    runs = Path(runs)
    recon, info, judge = _reconstructors(runs, Path(bundle_dir) if bundle_dir else None)
    generators = info.pop("_generators")
    if not generators:
        raise FileNotFoundError(f"no cyclic runs (folders with checkpoints/) under {runs}")
    data = load_split(data_name, "test")
    if n < 2 or repeats < 1 or n * repeats > len(data.images):
        raise ValueError(f"need n ≥ 2, repeats ≥ 1 and n × repeats ≤ {len(data.images)}")
    features, _ = load_classifier(classifier_path)
    per_repeat, table, examples = score_repeats(
        data, {m: (lambda x, _offset, apply=apply: apply(x).astype(np.float32)) for m, apply in recon.items()},
        n, repeats, judge, features, batch, n_examples=12,
    )  # fmt: skip

    # Sample FD (evaluate_samples' protocol): first n_samples real test images vs n_samples G(z), z from seed.
    real_x = torch.from_numpy(to_model_range(data.images[:n_samples]))
    real_sf = classifier_features(features, real_x)
    sample_fd: dict[str, Any] = {}
    for model, (G, z_dim) in generators.items():
        rng = torch.Generator().manual_seed(seed)
        fake = torch.cat(
            [G(torch.randn(min(500, n_samples - i), z_dim, generator=rng)) for i in range(0, n_samples, 500)]
        )
        predicted = features(fake).argmax(1).numpy()
        sample_fd[model] = {
            "fd_samples_vs_test": frechet_distance_of_features(real_sf, classifier_features(features, fake)),
            "sample_class_histogram": np.bincount(predicted, minlength=len(data.class_names)).tolist(),
        }
        examples[f"samples_{model}"] = fake[:12].numpy()
    from training.datasets import load_dataset

    train = load_dataset(data_name, "train")
    floor_index = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n_samples]
    floor = frechet_distance_of_features(real_sf, classifier_features(features, train.batch(floor_index)))
    return {
        "dataset": data_name, "split": "test", "n": n, "repeats": repeats, "seed": seed,
        "value_range": [0, 1], "data_range": 1.0,
        "ms_ssim_scales": metrics.ms_ssim_scales(int(data.images.shape[1])),
        "class_consistency_judge": f"{bundle_dir}/classifier.onnx" if judge is not None else None,
        "fd_features": f"penultimate layer of {classifier_path}",
        "models": info,
        "table": table,
        "per_repeat": per_repeat,
        "sample_fd": {"n_samples": n_samples, "n_real_test": int(len(real_x)), "fd_train_vs_test": floor, **sample_fd},
        "_examples": examples,
    }  # fmt: skip


def write_cyclic_report(result: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """OUT/cyclic.json and OUT/reconstructions.png (rows: input, then each method; plus sample rows below)."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    examples = result.pop("_examples")
    json_path = out / "cyclic.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    rows = ["input", *[k for k in ORDER if k in examples]]

    def strip(key: str) -> np.ndarray:
        tiles = to_uint8(examples[key])
        pad = np.full((tiles.shape[1], 2, tiles.shape[3]), 255, np.uint8)
        return np.concatenate([np.concatenate([t, pad], axis=1) for t in tiles], axis=1)

    gap = lambda width: np.full((2, width, examples["input"].shape[1]), 255, np.uint8)  # noqa: E731
    strips = [strip(k) for k in rows]
    grid = np.concatenate([s for row in strips for s in (row, gap(row.shape[1]))], axis=0)
    png_path = out / "reconstructions.png"
    image = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    image.resize((image.width * 3, image.height * 3), Image.Resampling.NEAREST).save(png_path)
    sample_rows = [k for k in (f"samples_{m}" for m in ORDER) if k in examples]
    if sample_rows:
        strips = [strip(k) for k in sample_rows]
        grid = np.concatenate([s for row in strips for s in (row, gap(row.shape[1]))], axis=0)
        image = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
        image.resize((image.width * 3, image.height * 3), Image.Resampling.NEAREST).save(out / "samples.png")
    return json_path, png_path
