"""Build a shipped model bundle from a GAN checkpoint and its DFI inverter: measure, export, parity-check.

    python -m training export bundle --gan RUN/checkpoints/step-010000.safetensors \
        --inverter DFI_RUN/inverter.safetensors --classifier CLS/classifier.safetensors --name fashion-mnist

The manifest's metrics are measured here on n unseen test images (DFI and DFI^opt), and the ONNX graphs are
checked against torch before the command succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dfi_core.bundle import edit_bundle, load_bundle
from training.classifiers.classifier import load_classifier
from training.core.checkpoint import read_metadata
from training.core.runs import RunDir
from training.evaluation.samples import flat_inversion_scores, score_inversion
from training.export.onnx import check_parity, export_bundle
from training.export.shared_weights import share_bundle_weights
from training.inversion.dfi import load_export_ready, load_gan_split, load_inverter, read_gan_config

INVERTER_FILE = "inverter.safetensors"
PARITY_TOLERANCE = 1e-4  # max |ONNX Runtime − torch| the DFI issue sets for every shipped graph

LICENSES = {
    "fashion-mnist": "MIT (Zalando Research); Debian package dataset-fashion-mnist",
    "emoji": "emoji-datasource-twitter (CC-BY 4.0) + emoji-datasource-google (Apache 2.0) 16.0.0, from npm",
}


def _command(run: RunDir) -> str | None:
    return run.read_command() if run.command_path.is_file() else None


def _round(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else _round(v) if isinstance(v, dict) else v)
            for k, v in values.items()}  # fmt: skip


def build_bundle(
    gan_checkpoint: Path,
    inverter_checkpoint: Path,
    classifier_checkpoint: Path,
    name: str,
    out: Path = Path("models"),
    n: int = 1000,
    refine_steps: int = 50,
    extra_commands: list[str] | None = None,
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    torch.manual_seed(0)
    inverter, G, _, inv_config = load_inverter(inverter_checkpoint, "cpu", gan_checkpoint)
    classifier, _ = load_classifier(classifier_checkpoint)
    gan_config = read_gan_config(gan_checkpoint)
    test = load_gan_split(gan_config, "test")
    scores = score_inversion(inverter, G, classifier, test, n=n, refine_steps=refine_steps)
    scores.pop("reconstructions")
    scores = flat_inversion_scores(scores)  # the manifest's schema: psnr, psnr_std, ssim, ssim_std, ...
    metrics = {
        "test_images": scores["n"],  # min(n, size of the test split): emoji has 688
        "split": "test (never seen in training)",
        "dfi": _round({k: v for k, v in scores.items() if k not in ("refined", "n")}),
        "dfi_opt": _round(scores.get("refined", {})),
        "classifier": str(classifier_checkpoint),
        "notes": "PSNR/SSIM on [0,1] images, data_range 1 (dfi_core.metrics; SSIM torchmetrics); "
        "class_consistency and fd use the data set's classifier (penultimate features); "
        "dfi_opt = 50 Adam steps of eq. 2 from the DFI latent",
    }
    runs = (
        RunDir.of_checkpoint(gan_checkpoint),
        RunDir(inverter_checkpoint.parent),
        RunDir(classifier_checkpoint.parent),
    )
    commands = [c for c in map(_command, runs) if c]
    export_ready = load_export_ready(inverter_checkpoint)
    bundle_dir = export_bundle(
        out, name, G, export_ready.features, export_ready,
        dataset={"name": gan_config.data.name, "split": "train", "license": LICENSES.get(gan_config.data.name, "")},
        training={"commands": commands + (extra_commands or []),
                  "seeds": {"gan": gan_config.seed, "inverter": inv_config.seed},
                  "checkpoints": [gan_checkpoint.name, inverter_checkpoint.name]},
        metrics=metrics, gan_config=read_metadata(gan_checkpoint)["config"], overwrite=overwrite,
    )  # fmt: skip
    parity = check_parity(bundle_dir, G, export_ready.features, export_ready)
    if max(parity.values()) > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX parity failed for {bundle_dir}: {parity} (tolerance {PARITY_TOLERANCE})")
    with edit_bundle(bundle_dir) as edit:
        # The inverter's torch weights travel with the bundle so that CI can re-check ONNX parity on shipped bundles
        # without the run folders (tests/models/test_shipped_bundles.py).
        edit.add_file(inverter_checkpoint, INVERTER_FILE)
        edit.record_checkpoint(INVERTER_FILE)
        edit.set_metric("onnx_parity_max_abs_error", {k: float(f"{v:.3g}") for k, v in parity.items()})
    share_bundle_weights(bundle_dir)  # the CN (and any un-normalised D^f) weights once, in inverter.safetensors
    # The optional parts every shipped bundle carries: the data set's judge and the named editing directions.
    from training.export.extras import add_classifier, add_directions

    add_classifier(bundle_dir, classifier_checkpoint)
    if gan_config.data.name in ("fashion-mnist", "emoji"):
        add_directions(bundle_dir)
    load_bundle(bundle_dir)
    return bundle_dir, edit.written.manifest.metrics


def bundle_parity(bundle_dir: str | Path, n: int = 64, batch_sizes: tuple[int, ...] = (1, 64)) -> dict[str, float]:
    """ONNX Runtime vs torch for a shipped bundle, rebuilt from the bundle's own safetensors files."""
    from training.export.onnx import load_refinement_generator

    bundle = load_bundle(bundle_dir)
    G = load_refinement_generator(bundle.path(bundle.manifest.refinement.file))
    inverter = load_export_ready(bundle.path(INVERTER_FILE))
    return check_parity(bundle.folder, G, inverter.features, inverter, n=n, batch_sizes=batch_sizes)
