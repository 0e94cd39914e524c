"""`python -m training evaluate gan-metric`: the ICLR reconstruction metric per class of a bundle's data set.

The first n unseen test images (the papers' protocol, as the service's metric jobs: "first n of the split") go
through the bundle's inverter and generator (invert.onnx → generator.onnx; `dfi_opt` adds Adam steps of eq. 2);
each image gets PSNR / SSIM (dfi_core.metrics) and, with the bundle's classifier.onnx, class-consistency; FD per
class compares the real images of a class with their reconstructions in the classifier.onnx logits (or, with
`--classifier`, that checkpoint's penultimate features). `dfi_core.per_class` does the per-class summaries, the
FD at one n for every class and the flag rule (stated there and in the result's `rule`), so these numbers and a
metric job's `per_class` are the same computation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfi_core import metrics
from dfi_core.bundle import load_bundle
from dfi_core.datasets import load_split
from dfi_core.per_class import FLAG_K, per_class_report
from dfi_core.preprocessing import to_model_range
from training.evaluation.bundle import open_reconstructors
from training.evaluation.scoring import Scores

PER_CLASS_METRICS = ("psnr", "ssim")


def score_per_class(reconstruct: Any, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                    judge: Any = None, features: Any = None, fd_n: int | None = None, k: float = FLAG_K,
                    reference: dict[str, Any] | None = None, batch: int = 250,
                    fd_features: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Reconstruct `images` (model range [N, C, H, W]) batch by batch and build the per-class report.
    `features`: images → [B, D] features for FD (default: `judge`'s logits; no FD without either)."""
    features = features or judge
    scores, real_f, fake_f = Scores(PER_CLASS_METRICS), [], []
    for start in range(0, len(images), batch):
        x = images[start : start + batch]
        out = reconstruct(x, start)
        scores.add_images(out, x)
        if judge is not None:
            scores.add_class_consistency(judge(out), labels[start : start + len(x)])
        if features is not None:
            real_f.append(np.asarray(features(x), np.float64))
            fake_f.append(np.asarray(features(out), np.float64))
    values = {name: scores.values(name) for name in (*PER_CLASS_METRICS, "class_consistency") if name in scores}
    report = per_class_report(values, labels, class_names,
                              np.concatenate(real_f) if real_f else None, np.concatenate(fake_f) if fake_f else None,
                              fd_n, fd_features, k, reference["by_class"] if reference else None)  # fmt: skip
    if reference is not None:
        report["reference"] = reference.get("source", "given")
    report["overall"] = {name: metrics.summarize(v) for name, v in values.items()}
    return report


def evaluate_gan_metric(bundle_dir: Path, n: int = 1000, method: str = "dfi", refine_steps: int = 50,
                        classifier_checkpoint: Path | None = None, fd_n: int | None = None, k: float = FLAG_K,
                        reference: Path | None = None, batch: int = 250, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    if method not in ("dfi", "dfi_opt"):
        raise ValueError(f"method must be dfi or dfi_opt, got {method!r}")
    bundle = load_bundle(bundle_dir)
    data = load_split(bundle.manifest.dataset.name, "test")
    if not 2 <= n <= len(data.images):
        raise ValueError(f"need 2 ≤ n ≤ {len(data.images)} test images, got {n}")
    reconstructors, judge = open_reconstructors(bundle, [method], refine_steps, seed)
    features, fd_features = None, "classifier.onnx logits" if judge is not None else None
    if classifier_checkpoint is not None:
        from training.classifiers.classifier import load_classifier

        net = load_classifier(classifier_checkpoint)[0]

        def features(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return net.features(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

        fd_features = f"penultimate features of {classifier_checkpoint}"
    ref = json.loads(Path(reference).read_text())["per_class"] if reference is not None else None
    if ref is not None:
        ref["source"] = str(reference)
    images = to_model_range(data.images[:n])
    report = score_per_class(reconstructors[method], images, data.labels[:n], list(data.class_names), judge,
                             features, fd_n, k, ref, batch, fd_features)  # fmt: skip
    return {
        "bundle": bundle.name,
        "dataset": bundle.manifest.dataset.name,
        "split": "test",
        "images": "first n of the split",
        "n": n,
        "method": method,
        "refine_steps": refine_steps if method == "dfi_opt" else 0,
        "seed": seed,
        "value_range": [0, 1],
        "data_range": 1.0,
        "per_class": report,
    }


def write_gan_metric_report(result: dict[str, Any], out: Path, name: str | None = None) -> tuple[Path, Path, Path]:
    """<name>.json (the result), <name>.md (a table, flagged classes marked) and <name>.png (per-class PSNR
    bars, flagged classes in red, the median and the flag threshold drawn)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = name or f"{result['bundle']}-per-class"
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    report = result["per_class"]
    flagged = set(report["flagged"])
    cols = [m for m in ("psnr", "ssim", "class_consistency") if any(e.get(m) for e in report["by_class"].values())]
    fd_head = f" | FD (n={report['fd']['n_per_class']})" if report["fd"] else ""
    lines = [f"| class | n | {' | '.join(cols)}{fd_head} | z (psnr) | flagged |",
             "|---" * (len(cols) + 4 + bool(report["fd"])) + "|"]  # fmt: skip
    z = report["flags"].get("psnr", {}).get("z", {})
    for cls, entry in report["by_class"].items():
        cells = [f"{entry[m]['mean']:.4f}" if entry.get(m) else "–" for m in cols]
        if report["fd"]:
            cells.append(f"{entry['fd']:.3f}" if entry["fd"] is not None else "–")
        mark = "**yes**" if cls in flagged else ""
        lines.append(f"| {cls} | {entry['n']} | {' | '.join(cells)} | {z.get(cls, float('nan')):+.2f} | {mark} |")
    lines += ["", f"Rule: {report['rule']['text']}.", f"Flagged: {sorted(flagged) or 'none'}."]
    md_path = out / f"{stem}.md"
    md_path.write_text("\n".join(lines) + "\n")
    png_path = out / f"{stem}.png"
    plot_per_class(report, png_path, f"{result['bundle']} · {result['method']} · n={result['n']}")
    return json_path, md_path, png_path


def plot_per_class(report: dict[str, Any], path: Path, title: str, metric: str = "psnr") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = report["classes"]
    means = [report["by_class"][c][metric]["mean"] if report["by_class"][c].get(metric) else np.nan for c in names]
    flag = report["flags"].get(metric, {})
    colours = ["#c0392b" if c in flag.get("flagged", []) else "#4a78a8" for c in names]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(range(len(names)), means, color=colours)
    if flag.get("median") is not None and report.get("reference") is None:
        ax.axhline(flag["median"], color="k", lw=0.8, label="median")
        ax.axhline(flag["median"] - flag["k"] * flag["scale"], color="#c0392b", lw=0.8, ls="--", label="flag below")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
