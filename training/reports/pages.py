"""docs/zoo.md from the zoo's run folders: sample grids, loss curves, and the sample-FD table.

Every number in the page is read from files the runs wrote (sample_fd.json, metrics.json, log.jsonl), and
every row carries the command that produced it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from training.core.plotting import pyplot
from training.core.runs import RunDir

ORDER = ("dcgan", "lsgan", "wgan-gp", "sngan", "dfm", "rfgan")


def earlier_scores(run: Path) -> str:
    """FD of earlier checkpoints (sample_fd_step*.json, from `evaluate samples --out`): the convergence evidence."""
    scores = []
    for path in run.glob("sample_fd_step*.json"):
        score = json.loads(path.read_text())
        scores.append((score["checkpoint_step"], score["fd_samples_vs_test"]))
    return ", ".join(f"{step}: {fd:.2f}" for step, fd in sorted(scores)) or "–"


def wall_seconds(records: list[dict[str, Any]]) -> float:
    """Training wall time from a log whose `seconds` restart at every resume: the sum of each segment's end."""
    total, previous = 0.0, 0.0
    for record in records:
        if record["seconds"] < previous:
            total += previous
        previous = record["seconds"]
    return total + previous


def plot_losses(run: Path, target: Path) -> Path:
    plt = pyplot()
    records = RunDir(run).read_log()
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(5, 2.6), dpi=100)
    for key in ("loss_D", "loss_G"):
        ax.plot(steps, [r[key] for r in records], label=key, linewidth=0.8)
    ax.set_xlabel("generator step")
    ax.set_title(run.name, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target


def plot_inverter_curves(runs: dict[str, Path], target: Path) -> Path:
    """Training curves of inverter runs side by side: the held-out latent error ‖ẑ − z‖² on fixed generated pairs
    (what DFI minimises, eq. 5) and the image MSE of G(ẑ) on fixed real test images (what the targets measure),
    both from each run's log.jsonl, against the training step."""
    logs = {name: [r for r in RunDir(run).read_log() if "heldout_latent_error" in r] for name, run in runs.items()}
    for name, records in logs.items():
        if not records:
            raise ValueError(f"{runs[name]} has no inverter log (log.jsonl with heldout_latent_error)")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), dpi=100)
    for name, records in logs.items():
        steps = [r["step"] for r in records]
        axes[0].plot(steps, [r["heldout_latent_error"] for r in records], label=name, linewidth=0.9)
        axes[1].plot(steps, [r["heldout_image_mse"] for r in records], label=name, linewidth=0.9)
    for ax, title in zip(axes, ("held-out latent error (generated pairs)", "held-out image MSE (real test, [-1, 1])"),
                         strict=True):  # fmt: skip
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=9)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target


def panel(images: list[tuple[str, Path]], target: Path, columns: int = 4) -> Path:
    """Several sample grids side by side with their titles (the README picture)."""
    from PIL import Image

    plt = pyplot()
    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), dpi=110, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, path) in zip(axes.flat, images, strict=False):
        ax.imshow(Image.open(path), cmap="gray")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)
    return target


def _final_samples(run: Path) -> Path | None:
    grids = sorted(RunDir(run).samples.glob("step-*.png"))
    return grids[-1] if grids else None


def zoo_report(runs_root: Path, docs_dir: Path) -> Path:
    figures = docs_dir / "zoo"
    figures.mkdir(parents=True, exist_ok=True)
    rows, panels = [], {}
    for run in sorted(p for p in runs_root.iterdir() if RunDir(p).sample_fd_path.is_file()):
        score = json.loads(RunDir(run).sample_fd_path.read_text())
        folder = RunDir(run)
        config = folder.read_config()
        samples = _final_samples(run)
        if samples is not None:
            shutil.copyfile(samples, figures / f"{run.name}-samples.png")
            panels.setdefault(config["data"]["name"], []).append((config["loss"]["name"], samples))
        plot_losses(run, figures / f"{run.name}-losses.png")
        log = folder.read_log()
        rows.append({
            "run": run.name, "data": config["data"]["name"], "loss": config["loss"]["name"],
            "steps": score.get("checkpoint_step", config["steps"]), "n_critic": config["optim"]["n_critic"],
            "fd": score["fd_samples_vs_test"], "floor": score["fd_train_vs_test"], "n": score["n_samples"],
            "hist": score["sample_class_histogram"], "minutes": wall_seconds(log) / 60,
            "command": folder.read_command(), "fd_command": score.get("command", ""),
            "earlier": earlier_scores(run),
        })  # fmt: skip
    for data, items in panels.items():
        items.sort(key=lambda item: ORDER.index(item[0]) if item[0] in ORDER else len(ORDER))
        panel(items, figures / f"{data}-zoo.png", columns=min(4, len(items)))
    classifier_runs = [RunDir(run) for run in sorted(runs_root.glob("*-classifier"))]
    classifiers = {
        run.name: json.loads(run.metrics_path.read_text()) for run in classifier_runs if run.metrics_path.is_file()
    }
    page = docs_dir / "zoo.md"
    page.write_text(render(rows, classifiers, {k: command_of(runs_root / k) for k in classifiers}))
    return page


def command_of(run: Path) -> str:
    folder = RunDir(run)
    return folder.read_command() if folder.command_path.is_file() else ""


def _resume_note(row: dict[str, Any]) -> list[str]:
    """A run resumed past its first command's --steps (command.txt keeps the first command) says so."""
    match = re.search(r"--steps (\d+)", row["command"])
    if match is None or int(match.group(1)) == row["steps"]:
        return []
    first = int(match.group(1))
    return [
        f"- {row['loss']}: the recorded command below trained {first:,} G steps; the run was then resumed with",
        f"  `--resume` from its step-{first} checkpoint to `--steps {row['steps']}` (a resume repeats exactly the",
        "  steps of an uninterrupted run, `training/gan/train.py`; command.txt keeps the first command). The table's",
        f"  {row['steps']} steps and FD are the resumed run's. `bash scripts/train_zoo.sh` reproduces it in one go.",
    ]


def render(rows: list[dict[str, Any]], classifiers: dict[str, dict], classifier_commands: dict[str, str]) -> str:
    lines = [
        "# The GAN zoo: trained models and their sample quality",
        "",
        "Made by `bash scripts/train_zoo.sh` (training, then `python -m training evaluate samples` per run), and",
        "this page by `python -m training report zoo --runs runs/zoo --docs docs`. Machine: 2 CPU cores, one",
        "torch thread per run, two to four runs sharing the cores (no GPU was lent to this task), so wall minutes",
        "say little about speed. Every number below is read from the run folders.",
        "",
        "**FD** is the Fréchet distance between 10,000 samples and the whole test split (10,000 Fashion-MNIST /",
        "688 emoji images) in the feature space of the data set's own classifier (penultimate layer, 128-d); lower",
        "is better. The **floor** is the same distance for min(10,000, train split) real *training* images",
        "(10,000 Fashion-MNIST / all 6,884 emoji): what a perfect generator would score at these n",
        "(`training/evaluation/samples.py`). FD is biased upward at small n: compare these FDs only with FDs at the",
        "same n (10,000 samples vs the whole test split), not with the 1000- or 137-image FDs of docs/results.",
        "",
        "## Classifiers (feature space of the FD; judge of class-consistency)",
        "",
        "| run | test accuracy | test images | command |",
        "|---|---|---|---|",
    ]
    for name, metrics in classifiers.items():
        accuracy, n = metrics["test_accuracy"], metrics["test_n"]
        lines.append(f"| {name} | {accuracy:.4f} | {n} | `{classifier_commands[name]}` |")
    for data in sorted({r["data"] for r in rows}):
        lines += ["", f"## {data}", "", f"![samples](zoo/{data}-zoo.png)", ""]
        lines += [
            "| GAN | G steps | n_critic | FD ↓ | FD at earlier steps | floor | wall minutes | samples per class |"
        ]
        lines += ["|---|---|---|---|---|---|---|---|"]
        subset = sorted((r for r in rows if r["data"] == data), key=lambda r: r["fd"])
        for r in subset:
            lines.append(
                f"| {r['loss']} | {r['steps']} | {r['n_critic']} | {r['fd']:.2f} | {r['earlier']} | {r['floor']:.2f} | "
                f"{r['minutes']:.0f} | {' '.join(str(h) for h in r['hist'])} |"
            )
        lines += ["", "Loss curves and final grids:", ""]
        for r in subset:
            lines.append(f"- {r['loss']}: [samples](zoo/{r['run']}-samples.png), [losses](zoo/{r['run']}-losses.png)")
        lines += ["", "Commands:", ""]
        for r in subset:
            lines += _resume_note(r)
            lines += [f"- `{r['command']}`", f"  - `{r['fd_command']}`"]
    return "\n".join(lines) + "\n"


METHOD_ORDER = ("dfi", "dfi_image", "enc_latent", "enc_image")


def dfi_report(
    inverters: list[Path], classifier_path: Path, docs_dir: Path, n: int = 1000, refine_steps: int = 50
) -> Path:
    """docs/dfi.md: IJCV Table 1's methods (each with and without eq. 2 refinement) on n unseen test images,
    and the reconstruction grid input | DFI | DFI^opt | ENC_image (when present)."""
    import torch

    from training.classifiers.classifier import load_classifier
    from training.core.plotting import save_grid
    from training.evaluation.samples import flat_inversion_scores, score_inversion
    from training.inversion.dfi import load_gan_split, load_inverter

    classifier, _ = load_classifier(classifier_path)
    results, grids, data_name = {}, {}, ""
    for path in inverters:
        torch.manual_seed(0)
        inverter, G, _, config = load_inverter(path)
        test = load_gan_split(_gan_of(config.gan_checkpoint), "test")
        data_name = test.name
        scores = score_inversion(inverter, G, classifier, test, n=n, refine_steps=refine_steps)
        recon = scores.pop("reconstructions")
        grids[config.method] = recon
        grids["input"] = test.batch(torch.arange(n))
        results[config.method] = {**flat_inversion_scores(scores), "checkpoint": str(path),
                                  "command": command_of(path.parent)}  # fmt: skip
    figures = docs_dir / "dfi"
    figures.mkdir(parents=True, exist_ok=True)
    columns = [("input", None)] + [(m, k) for m in ("dfi",) for k in ("direct", "refined")]
    if "enc_image" in grids:
        columns.append(("enc_image", "direct"))
    picks = torch.arange(0, n, max(1, n // 12))[:12]
    tiles = []
    for index in picks:
        for method, key in columns:
            tiles.append(grids[method][index] if key is None else grids[method][key][index])
    save_grid(torch.stack(tiles), figures / f"{data_name}-reconstructions.png", nrow=len(columns) * 2, scale=2)
    (figures / f"{data_name}-scores.json").write_text(json.dumps(results, indent=2))
    page = docs_dir / "dfi.md"
    page.write_text(render_dfi(results, data_name, [c[0] + ("^opt" if c[1] == "refined" else "") for c in columns],
                               n, refine_steps, classifier_path))  # fmt: skip
    return page


def _gan_of(checkpoint: str):
    from training.inversion.dfi import read_gan_config

    return read_gan_config(checkpoint)


def render_dfi(results: dict[str, dict], data: str, columns: list[str], n: int, steps: int, classifier: Path) -> str:
    names = {"dfi": "DFI", "dfi_image": "DFI_image", "enc_latent": "ENC_latent", "enc_image": "ENC_image"}
    lines = [
        f"# DFI and its ablations on {data} (IJCV Table 1 / Fig. 8)",
        "",
        f"{n} unseen test images; PSNR / SSIM on [0, 1] images (torchmetrics, data_range 1), mean ± std over images;",
        "class-consistency = the data set's classifier gives the reconstruction the true label; FD = Fréchet",
        f"distance between reconstructions and the real images in that classifier's features (`{classifier}`).",
        f"`^opt` = {steps} Adam steps of eq. 2 (min_z ‖G(z) − x‖²) from the method's ẑ.",
        "",
        "| method | PSNR ↑ | SSIM ↑ | class-consistency ↑ | FD ↓ |",
        "|---|---|---|---|---|",
    ]
    for method in [m for m in METHOD_ORDER if m in results]:
        r = results[method]
        for label, s in ((names[method], r), (names[method] + "^opt", r.get("refined"))):
            if s:
                psnr, ssim = f"{s['psnr']:.2f} ± {s['psnr_std']:.2f}", f"{s['ssim']:.3f} ± {s['ssim_std']:.3f}"
                lines.append(f"| {label} | {psnr} | {ssim} | {s['class_consistency']:.3f} | {s['fd']:.2f} |")
    lines += ["", f"![reconstructions](dfi/{data}-reconstructions.png)", "",
              f"Columns, in pairs of images per row: {' | '.join(columns)}.", "", "Commands:", ""]  # fmt: skip
    for method in [m for m in METHOD_ORDER if m in results]:
        lines.append(f"- {names[method]}: `{results[method]['command']}`")
    return "\n".join(lines) + "\n"
