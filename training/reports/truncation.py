"""Issue 23's truncation sweep: does the ICLR reconstruction metric fall as a GAN's diversity is cut?

    python -m training report truncation --classifier runs/zoo/fashion-mnist-classifier/classifier.safetensors

(results and verdict: docs/results/truncation.md)

G_ψ(z) = G(ψ·z), z ~ N(0, I), is a GAN in its own right whose samples cover less of G's output space the smaller ψ
is (the "truncation trick", Brock et al. 2019, BigGAN sec. 3.1, here as a plain rescaling rather than resampling).
For each ψ the sweep

1. writes G_ψ as an ordinary zoo checkpoint: G's first layer is a bias-free Linear (`Generator.project[0]`), so
   W·(ψz) = (ψW)·z and scaling that weight by ψ *is* G_ψ, exactly, for the frozen, eval-mode G that DFI, sampling
   and the bundle use (in train mode the BatchNorm after it would renormalise ψ away; nothing here trains G). D is
   kept as it is: D^f is the same frozen feature map for every ψ;
2. trains a DFI connection network on G_ψ's generated pairs (IJCV eq. 5, `training.inversion.dfi.train_inverter`)
   with the shipped recipe (models/fashion-mnist/manifest.json's `train inverter` command: taps actv7-0,last,
   R = 7, CN 2 × 1024, MSE latent loss, batch 64, Adam 1e-3 cosine) at one reduced step budget for every ψ;
3. scores the ICLR metric on the first n *unseen* test images, x → G_ψ(CN(D^f(x))), per class with
   `training.evaluation.per_class.score_per_class` (the computation of `evaluate gan-metric`: PSNR / SSIM,
   class-consistency by the classifier's label, FD per class in its penultimate features, flags by
   dfi_core.per_class's rule, for ψ < 1 on the per-class difference to the ψ = 1 run);
4. scores G_ψ's samples with `training.evaluation.samples.evaluate_samples` (`evaluate samples`: sample FD to the
   test split, classifier IS, MS-SSIM diversity).

Each ψ's result is one JSON (DOCS/psi-<ψ>.json); a ψ whose JSON exists is read back, not recomputed, and a ψ whose
G_ψ checkpoint or inverter exists reuses it, so a stopped sweep resumes where it was.

Note what truncation does and does not change: G_ψ has the same *range* as G (CN may output ẑ of norm ~|z|/ψ), only
the distribution of its samples narrows. So the reconstruction metric can fall only through the inverter, which
learns D^f(G(ψz)) → z from a narrower set of images and must extrapolate to test images outside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfi_core.bundle import load_bundle
from dfi_core.datasets import load_split
from dfi_core.per_class import FLAG_K
from dfi_core.preprocessing import to_model_range
from training.classifiers.classifier import load_classifier
from training.core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from training.core.config import config_from_dict
from training.core.plotting import pyplot, save_grid
from training.core.runs import RunDir
from training.evaluation.per_class import score_per_class
from training.evaluation.samples import MS_SSIM_PAIRS, evaluate_samples
from training.gan.config import GANConfig
from training.gan.model import build_gan, load_generator_and_discriminator, shipped_generator
from training.inversion.dfi import InverterConfig, load_inverter, read_gan_config, save_comparison, train_inverter
from training.inversion.networks import FeatureExtractorConfig

PSIS = (1.0, 0.75, 0.5, 0.25)
GRID_SAMPLES = 64  # samples per ψ grid, the same z (seed GRID_SEED) for every ψ: the grids show one z shrinking
GRID_SEED = 0
RECON_IMAGES = 16  # first test images in each reconstruction grid (real | G_ψ(ẑ) side by side)
OVERALL = ("psnr", "ssim", "class_consistency")
Judge = Callable[[np.ndarray], np.ndarray]  # images [B, C, H, W] float32 [-1, +1] → logits [B, classes]


@dataclass
class SweepConfig:
    """The sweep's budget. CN's recipe is the shipped one (module docstring, point 2); only `cn_steps` (equal for
    every ψ) and, for tests, `cn_hidden` differ from it."""

    psis: tuple[float, ...] = PSIS
    cn_steps: int = 2000
    cn_hidden: int = 1024
    n_test: int = 10_000  # first n unseen test images for the reconstruction metric
    n_samples: int = 10_000  # samples of G_ψ for sample FD / IS / MS-SSIM (FD is biased by n: one n for every ψ)
    ms_ssim_pairs: int = MS_SSIM_PAIRS  # sample pairs of the MS-SSIM diversity (evaluate samples' default)
    seed: int = 0
    quiet: bool = True

    def validate(self) -> None:
        bad = [p for p in self.psis if not (math.isfinite(p) and 0 < p <= 1)]
        if bad or not self.psis:
            raise ValueError(f"ψ must lie in (0, 1], got {list(self.psis) or 'none'}")
        if len(set(self.psis)) != len(self.psis):
            raise ValueError(f"ψ values repeat: {list(self.psis)}")
        if self.cn_steps < 1 or self.n_test < 2 or self.n_samples < 10:
            raise ValueError("need cn_steps ≥ 1, n_test ≥ 2 and n_samples ≥ 10 (classifier IS uses 10 splits)")


def psi_name(psi: float) -> str:
    return f"psi-{psi:g}"


def truncated_checkpoint(gan_checkpoint: str | Path, psi: float, out: str | Path) -> Path:
    """Write G_ψ (module docstring, point 1) as a dfi-checkpoint/1 with the GAN's own config; D unchanged."""
    meta = read_metadata(gan_checkpoint)
    config = config_from_dict(meta["config"], expected=GANConfig)
    if len(config.generator.shape) != 3:
        raise ValueError(f"truncation needs an image GAN (G.project); {gan_checkpoint} makes {config.generator.shape}")
    modules = build_gan(config)
    load_checkpoint(gan_checkpoint, modules)
    first = shipped_generator(modules).project[0]
    if not isinstance(first, torch.nn.Linear) or first.bias is not None:
        raise ValueError("G's first layer is not a bias-free Linear: ψ cannot be folded into its weight")
    with torch.no_grad():
        first.weight.mul_(psi)  # W·(ψz) = (ψW)·z: the checkpoint's G is G_ψ
    extra = {**meta["extra"], "truncation_psi": psi, "truncated_from": str(gan_checkpoint)}
    return save_checkpoint(out, modules, {}, meta["config"], meta["step"], extra=extra)


def inverter_config(gan_checkpoint: Path, config: SweepConfig) -> InverterConfig:
    """The shipped DFI recipe (manifest `train inverter`) on G_ψ, at the sweep's step budget."""
    return InverterConfig(gan_checkpoint=str(gan_checkpoint), method="dfi",
                          features=FeatureExtractorConfig(("actv7-0", "last"), 7), hidden=config.cn_hidden, depth=2,
                          latent_loss="mse", steps=config.cn_steps, batch_size=64, lr=1e-3, seed=config.seed,
                          log_every=100, sample_every=max(config.cn_steps, 1), device="cpu")  # fmt: skip


def _numpy_net(net: torch.nn.Module) -> Any:
    """[B, C, H, W] float32 numpy in [-1, 1] → the module's output as float64 numpy (no grad)."""

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).double().numpy()

    return run


@torch.no_grad()
def score_reconstructions(inverter_path: Path, classifier_path: Path, n: int, docs: Path, stem: str,
                          reference: dict[str, Any] | None = None,
                          judge: Judge | None = None) -> dict[str, Any]:  # fmt: skip
    """The per-class ICLR metric of G_ψ(CN(D^f(x))) on the first n test images, and its reconstruction grid.
    Class-consistency by `judge` (images → logits; default: the classifier checkpoint's logits), FD per class in
    the checkpoint's penultimate features (as `evaluate gan-metric --classifier`)."""
    inverter, G, _, inverter_config = load_inverter(inverter_path)  # G: the G_ψ it was trained on (configs checked)
    gan = read_gan_config(inverter_config.gan_checkpoint)
    classifier, _ = load_classifier(classifier_path)
    data = load_split(gan.data.name, "test")
    images = to_model_range(data.images[:n])  # [n, C, H, W] float32, [-1, +1]
    labels = data.labels[:n]

    def reconstruct(x: np.ndarray, _offset: int) -> np.ndarray:
        return G(inverter(torch.from_numpy(np.ascontiguousarray(x, np.float32)))).numpy()

    report = score_per_class(reconstruct, images, labels, list(data.class_names), judge=judge or _numpy_net(classifier),
                             features=_numpy_net(classifier.features), k=FLAG_K, reference=reference,
                             fd_features=f"penultimate features of {classifier_path}")  # fmt: skip
    x = torch.from_numpy(images[:RECON_IMAGES])
    save_comparison([x, G(inverter(x))], docs / f"{stem}-reconstructions.png")
    return {"n": len(images), "images": "first n of the test split", "per_class": report}


def run_psi(psi: float, gan_checkpoint: Path, classifier: Path, runs: Path, docs: Path, config: SweepConfig,
            reference: dict[str, Any] | None = None, judge: Judge | None = None) -> dict[str, Any]:  # fmt: skip
    """One ψ, end to end (module docstring, points 1–4); each stage is skipped when its output exists."""
    stem = psi_name(psi)
    result_path = docs / f"{stem}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    folder = runs / stem
    step = read_metadata(gan_checkpoint)["step"]
    gan = folder / "gan" / "checkpoints" / f"step-{step:06d}.safetensors"
    if not gan.is_file():
        truncated_checkpoint(gan_checkpoint, psi, gan)
    inverter_run = RunDir(folder / "inverter")
    inverter = inverter_run.final_weights("inverter")
    if not inverter.is_file():
        train_inverter(inverter_config(gan, config), inverter_run.path, quiet=config.quiet)
    log = inverter_run.read_log()
    held = read_metadata(inverter)["extra"]
    recon = score_reconstructions(inverter, classifier, config.n_test, docs, stem, reference, judge)
    samples = evaluate_samples(gan, classifier, config.n_samples, config.seed, "cpu", config.ms_ssim_pairs)
    G_psi = load_generator_and_discriminator(gan)[0]
    z = torch.randn(GRID_SAMPLES, G_psi.cfg.z_dim, generator=torch.Generator().manual_seed(GRID_SEED))
    with torch.no_grad():
        save_grid(G_psi(z), docs / f"{stem}-samples.png", nrow=8, scale=2)
    result = {
        "psi": psi,
        "gan_checkpoint": str(gan),
        "inverter": str(inverter),
        "cn_steps": config.cn_steps,
        "cn_seconds": log[-1].get("seconds") if log else None,
        "heldout_latent_error": held.get("heldout_latent_error"),
        "heldout_image_mse": held.get("heldout_image_mse"),
        "reconstruction": recon,
        "samples": samples,
    }
    docs.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _mean(entry: dict[str, Any] | float | None) -> float | None:
    """A per-class entry's number: a summary's mean (PSNR, SSIM, ...) or a plain value (FD per class)."""
    return entry["mean"] if isinstance(entry, dict) else entry


def summary_row(result: dict[str, Any]) -> dict[str, Any]:
    """The table's numbers of one ψ: overall means of the reconstruction metric, sample scores, per-class PSNR."""
    report = result["reconstruction"]["per_class"]
    samples = result["samples"]
    return {
        "psi": result["psi"],
        **{f"recon_{m}": report["overall"][m]["mean"] for m in OVERALL if m in report["overall"]},
        "n_test": result["reconstruction"]["n"],
        "sample_fd": samples["fd_samples_vs_test"],
        "sample_fd_n": samples["n_samples"],
        "classifier_is": samples["classifier_is"]["mean"],
        "ms_ssim_diversity": samples["ms_ssim_diversity"]["mean"],
        # the classifier's label of each sample: which classes G_ψ stops drawing (the truth the metric should see)
        "sample_counts": dict(zip(report["classes"], samples["sample_class_histogram"], strict=True)),
        "heldout_latent_error": result["heldout_latent_error"],
        "cn_seconds": result["cn_seconds"],
        "per_class": {m: {c: _mean(e.get(m)) for c, e in report["by_class"].items()} for m in (*OVERALL, "fd")},
        "flagged_by": report.get("flagged_by", {}),
    }


def sweep(gan_checkpoint: str | Path, classifier: str | Path, runs: str | Path, docs: str | Path,
          config: SweepConfig | None = None, judge: Judge | None = None,
          judge_name: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Every ψ of `config.psis` (ψ = 1 first when present: the others' flags are relative to it), then the
    summary files: DOCS/truncation.json, truncation-table.md, truncation.png, truncation-per-class.png.
    `judge` (images → logits, e.g. a bundle's classifier.onnx) labels the reconstructions for class-consistency;
    default the `classifier` checkpoint."""
    config = config or SweepConfig()
    config.validate()
    gan_checkpoint, classifier, runs, docs = Path(gan_checkpoint), Path(classifier), Path(runs), Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    psis = sorted(config.psis, reverse=True)
    results, reference = {}, None
    for psi in psis:
        results[psi] = run_psi(psi, gan_checkpoint, classifier, runs, docs, config, reference, judge)
        if psi == 1.0:
            reference = dict(results[psi]["reconstruction"]["per_class"], source=str(docs / f"{psi_name(1.0)}.json"))
    first = results[psis[0]]["samples"]
    summary = {
        "gan_checkpoint": str(gan_checkpoint),
        "classifier": str(classifier),
        "class_consistency_judge": judge_name or f"logits of {classifier}",
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items() if k != "quiet"},
        "real_reference": {
            "fd_train_vs_test": first["fd_train_vs_test"],
            "classifier_is_real": first["classifier_is_real"]["mean"],
            "ms_ssim_diversity_real": first["ms_ssim_diversity_real"]["mean"],
        },  # fmt: skip
        "classes": results[psis[0]]["reconstruction"]["per_class"]["classes"],
        "rows": [summary_row(results[p]) for p in psis],
    }
    (docs / "truncation.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_table(summary, docs / "truncation-table.md")
    plot_sweep(summary, docs / "truncation.png")
    plot_per_class(summary, docs / "truncation-per-class.png")
    return summary


def write_table(summary: dict[str, Any], path: Path) -> Path:
    rows = summary["rows"]
    lines = ["| ψ | recon PSNR (dB) | recon SSIM | recon class-cons. | sample FD (n) | classifier IS | "
             "MS-SSIM div. | CN held-out latent err. | flagged vs ψ = 1 (PSNR) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        flagged = ", ".join(r["flagged_by"].get("psnr", [])) if r["psi"] != 1.0 else "(reference)"
        lines.append(f"| {r['psi']:g} | {r['recon_psnr']:.2f} | {r['recon_ssim']:.4f} | "
                     f"{r.get('recon_class_consistency', float('nan')):.4f} | {r['sample_fd']:.2f} "
                     f"({r['sample_fd_n']}) | {r['classifier_is']:.3f} | {r['ms_ssim_diversity']:.4f} | "
                     f"{r['heldout_latent_error']:.4f} | {flagged or '–'} |")  # fmt: skip
    ref = summary["real_reference"]
    lines += [
        "",
        f"Real test images: sample FD floor (train vs test) {ref['fd_train_vs_test']:.2f}, classifier IS "
        f"{ref['classifier_is_real']:.3f}, MS-SSIM diversity {ref['ms_ssim_diversity_real']:.4f}.",
        "",
    ]
    classes = summary["classes"]
    first, last = rows[0], rows[-1]
    lines += ["| class | " + " | ".join(f"PSNR ψ={r['psi']:g}" for r in rows) + " | ΔPSNR (last − first) | "
              f"samples ψ={first['psi']:g} → ψ={last['psi']:g} |",
              "|---" * (len(rows) + 3) + "|"]  # fmt: skip
    for c in classes:
        values = [r["per_class"]["psnr"][c] for r in rows]
        counts = f"{first['sample_counts'][c]} → {last['sample_counts'][c]}"
        lines.append(f"| {c} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {values[-1] - values[0]:+.2f} | "
                     f"{counts} |")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_sweep(summary: dict[str, Any], path: Path) -> Path:
    """Left: the reconstruction metric of test images vs ψ; right: the sample scores vs ψ (ψ falls to the right)."""
    plt = pyplot()
    rows = summary["rows"]
    psi = [r["psi"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(psi, [r["recon_psnr"] for r in rows], "o-", color="tab:blue", label="PSNR (dB)")
    left.set_ylabel("recon PSNR (dB)", color="tab:blue")
    twin = left.twinx()
    twin.plot(psi, [r["recon_ssim"] for r in rows], "s--", color="tab:green", label="SSIM")
    if all("recon_class_consistency" in r for r in rows):
        twin.plot(psi, [r["recon_class_consistency"] for r in rows], "^:", color="tab:purple", label="class-cons.")
    twin.set_ylabel("SSIM / class-consistency")
    handles = [h for ax in (left, twin) for h in ax.get_legend_handles_labels()[0]]
    twin.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower left")
    left.set_title(f"ICLR metric: G_ψ(CN(D^f(x))), {rows[0]['n_test']} unseen test images", fontsize=8)
    right.plot(psi, [r["sample_fd"] for r in rows], "o-", color="tab:red")
    right.set_ylabel("sample FD (lower = better)", color="tab:red")
    twin2 = right.twinx()
    twin2.plot(psi, [r["ms_ssim_diversity"] for r in rows], "s--", color="tab:orange")
    twin2.set_ylabel("MS-SSIM of sample pairs (higher = less diverse)", color="tab:orange", fontsize=7)
    right.set_title(f"samples of G_ψ (n = {rows[0]['sample_fd_n']})", fontsize=8)
    for ax in (left, right):
        ax.set_xlabel("ψ (G_ψ(z) = G(ψz))")
        ax.set_xticks(psi)
        ax.invert_xaxis()  # less diversity to the right
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_per_class(summary: dict[str, Any], path: Path) -> Path:
    """Each class's reconstruction PSNR minus its ψ = 1 value (the sweep's first row), against ψ."""
    plt = pyplot()
    rows = summary["rows"]
    psi = [r["psi"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for c in summary["classes"]:
        base = rows[0]["per_class"]["psnr"][c]
        ax.plot(psi, [r["per_class"]["psnr"][c] - base for r in rows], "o-", label=c, markersize=3)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xticks(psi)
    ax.invert_xaxis()
    ax.set_xlabel("ψ")
    ax.set_ylabel(f"ΔPSNR vs ψ = {rows[0]['psi']:g} (dB)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Per-class reconstruction PSNR of unseen test images", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def truncation_report(bundle: Path, classifier: Path, runs: Path, docs: Path, gan: Path | None = None,
                      psis: Sequence[float] = PSIS, cn_steps: int = 2000, n_test: int = 10_000,
                      n_samples: int = 10_000, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """What `python -m training report truncation` runs: the GAN is `gan`, else rebuilt from `bundle`
    (training.export.gan_from_bundle, into RUNS/gan/) once; then `sweep`."""
    if gan is None:
        from training.export.gan_from_bundle import gan_checkpoint_from_bundle

        meta = json.loads((bundle / "manifest.json").read_text())
        steps = meta["training"]["gan_config"]["steps"]
        gan = runs / "gan" / "checkpoints" / f"step-{steps:06d}.safetensors"
        if not gan.is_file():
            gan = gan_checkpoint_from_bundle(bundle, gan)
    config = SweepConfig(tuple(psis), cn_steps=cn_steps, n_test=n_test, n_samples=n_samples, seed=seed, quiet=False)
    judge, judge_name = None, None
    bundle_data = load_bundle(bundle, verify=False) if (bundle / "manifest.json").is_file() else None
    if bundle_data is not None and bundle_data.manifest.graphs.classifier:
        # gan-metric's judge: the bundle's classifier.onnx labels the reconstructions for class-consistency
        judge = bundle_data.open_graph("classifier", providers=["CPUExecutionProvider"])
        judge_name = f"{bundle}/classifier.onnx logits"
    return sweep(gan, classifier, runs, docs, config, judge, judge_name)
