"""Score trained inverters (torch checkpoints) with the bundle eval's protocol: disjoint repeats of unseen test images.

Used for the tables that compare many inverters of one data set: the GAN zoo (ICLR Table 1 / IJCV Table 2: DFI on
every GAN, next to each GAN's sample FD) and the sec. 4.7 sweeps (Tables 4, 5, 7: taps, pooling size R, CN depth).
Same metrics and loop as `training.evaluation.bundle.score_repeats`, so a row here and a bundle row are comparable.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfi_core import metrics
from dfi_core.datasets import load_split
from training.evaluation.bundle import check_request, score_repeats


def describe(config: Any, gan: Any, gan_steps: int) -> dict[str, Any]:
    """The settings that distinguish one inverter row from another (shown as table columns)."""
    return {
        "gan": gan.loss.name,
        "gan_steps": gan_steps,
        "method": config.method,
        "taps": ",".join(config.features.taps),
        "pool_size": config.features.pool_size,
        "depth": config.depth,
        "steps": config.steps,
    }


def evaluate_inverters(
    inverters: dict[str, Path],
    classifier_checkpoint: Path,
    n: int = 1000,
    repeats: int = 5,
    refine_steps: int = 0,
    sample_fd: bool = False,
    batch: int = 250,
) -> dict[str, Any]:
    """One row per inverter (and per inverter `<name>^opt` when refine_steps > 0); every inverter must be of the
    classifier's data set, so one table is one data set."""
    from dfi_core.refinement import refine
    from training.classifiers.classifier import load_classifier
    from training.core.checkpoint import read_metadata
    from training.evaluation.samples import evaluate_samples
    from training.inversion.dfi import load_inverter, read_gan_config

    if not inverters:
        raise ValueError("no inverters given")
    classifier, classifier_config = load_classifier(classifier_checkpoint)
    loaded, rows = {}, {}
    for name, path in inverters.items():
        model, G, _, config = load_inverter(path)
        meta = read_metadata(config.gan_checkpoint)
        gan = read_gan_config(config.gan_checkpoint)
        if gan.data.name != classifier_config.data.name:
            raise ValueError(f"{name}: inverter of {gan.data.name!r} but the classifier is of "
                             f"{classifier_config.data.name!r}")  # fmt: skip
        loaded[name] = (model, G)
        rows[name] = describe(config, gan, meta["step"])
        if sample_fd:
            samples = evaluate_samples(config.gan_checkpoint, classifier_checkpoint)
            rows[name]["sample_fd"] = samples["fd_samples_vs_test"]
    data = load_split(classifier_config.data.name, "test")
    check_request(["dfi"], n, repeats, len(data.images))

    def reconstructor(model: torch.nn.Module, G: torch.nn.Module, refined: bool):
        def run(x: np.ndarray, offset: int) -> np.ndarray:
            images = torch.from_numpy(x)
            with torch.no_grad():
                z = model(images)
            if refined:
                z, _ = refine(G, images, z, steps=refine_steps, method="adam")
            with torch.no_grad():
                return G(z).numpy()

        return run

    reconstructors = {}
    for name, (model, G) in loaded.items():
        reconstructors[name] = reconstructor(model, G, False)
        if refine_steps:
            reconstructors[f"{name}^opt"] = reconstructor(model, G, True)
            rows[f"{name}^opt"] = {**rows[name], "refine_steps": refine_steps}

    def judge(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return classifier(torch.from_numpy(x)).numpy()

    per_repeat, table, examples = score_repeats(data, reconstructors, n, repeats, judge, classifier, batch)
    return {
        "name": "inverters",
        "dataset": classifier_config.data.name,
        "split": "test",
        "n": n,
        "repeats": repeats,
        "refine_steps": refine_steps,
        "value_range": [0, 1],
        "data_range": 1.0,
        "implementations": {
            "ssim": f"torchmetrics {version('torchmetrics')}",
            "inverters": f"torch {torch.__version__}",
            "fd_features": str(classifier_checkpoint),
        },
        "unavailable": metrics.UNAVAILABLE,
        "machine": platform.platform(),
        "inverters": {name: str(path) for name, path in inverters.items()},
        "rows": rows,
        "table": table,
        "per_repeat": per_repeat,
        "_examples": examples,
    }


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (scipy), for "does the reconstruction metric rank the GANs as sample FD does"."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def write_inverter_report(result: dict[str, Any], out: Path, name: str) -> tuple[Path, Path, Path, Path]:
    """<name>.json, <name>.md (settings columns, then mean ± std per metric), <name>.png (rows: input, each row)
    and <name>-plot.png (see `plot_rows`)."""
    from PIL import Image

    from dfi_core.preprocessing import to_uint8

    out.mkdir(parents=True, exist_ok=True)
    examples = result.pop("_examples")
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    settings = [k for k in ("gan", "gan_steps", "sample_fd", "taps", "pool_size", "depth", "steps", "refine_steps")
                if any(k in r for r in result["rows"].values())]  # fmt: skip
    first = next(iter(result["table"].values()))
    keys = [k for k in ("psnr", "ssim", "ms_ssim", "class_consistency", "fd") if k in first]
    lines = [f"| row | {' | '.join(settings + keys)} |", "|---" * (len(settings) + len(keys) + 1) + "|"]
    for row, scores in result["table"].items():
        meta = result["rows"][row]
        cells = [f"{meta[k]:.2f}" if isinstance(meta.get(k), float) else str(meta.get(k, "")) for k in settings]
        cells += [f"{scores[k]['mean']:.4f} ± {scores[k]['std']:.4f}" for k in keys]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    md_path = out / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    picture_rows = [to_uint8(examples[k]) for k in ["input", *result["table"]]]
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in picture_rows], axis=0)
    png_path = out / f"{name}.png"
    image = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    image.resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(png_path)
    return json_path, md_path, png_path, plot_rows(result, out / f"{name}-plot.png")


def plot_rows(result: dict[str, Any], path: Path) -> Path:
    """Bars of PSNR and class-consistency per row (mean ± std over repeats); with sample FD, a second panel plots
    each GAN's sample FD against its reconstruction FD (ICLR sec. 4: do the two rank the GANs alike?)."""
    from training.core.plotting import pyplot

    plt = pyplot()
    rows = list(result["table"])
    has_fd = all("sample_fd" in result["rows"][r] for r in rows)
    fig, axes = plt.subplots(1, 3 if has_fd else 2, figsize=(13 if has_fd else 9, 0.45 * len(rows) + 1.5))
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "class_consistency", "class-consistency")):
        means = [result["table"][r][key]["mean"] for r in rows]
        stds = [result["table"][r][key]["std"] for r in rows]
        ax.barh(rows, means, xerr=stds, color="tab:blue", alpha=0.8)
        ax.set_xlim(min(means) - 3 * max(stds) - (1 if key == "psnr" else 0.05), max(means) + 3 * max(stds) + 0.01)
        ax.set_xlabel(label)
        ax.invert_yaxis()
    if has_fd:
        ax = axes[2]
        sample = [result["rows"][r]["sample_fd"] for r in rows]
        recon = [result["table"][r]["fd"]["mean"] for r in rows]
        ax.scatter(sample, recon)
        for r, x, y in zip(rows, sample, recon, strict=True):
            ax.annotate(r, (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel("sample FD (10,000 samples)")
        ax.set_ylabel("reconstruction FD (DFI)")
        ax.set_title(f"Spearman ρ = {spearman(sample, recon):.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
