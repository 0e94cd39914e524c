"""`export bundle | classifier | gan-checkpoint | share-weights | directions`: model bundles under models/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import command_line, set_threads, user_errors

# torch.onnx.export's path (training.export.onnx): dynamo is the default; torchscript where dynamo cannot capture a
# model. None: $DFI_ONNX_EXPORTER, else dynamo (a GAN given as ONNX graphs: torchscript, training.export.bundle).
ExporterOption = Annotated[
    str | None, typer.Option(help="ONNX exporter: dynamo | torchscript (default: $DFI_ONNX_EXPORTER, else dynamo)")
]


def _exporter(value: str | None) -> str | None:
    if value is not None and value not in ("dynamo", "torchscript"):
        raise typer.BadParameter(f"{value!r}: choose dynamo or torchscript", param_hint="--exporter")
    return value


def export_bundle_command(
    ctx: typer.Context,
    inverter: Annotated[Path, typer.Option(help="DFI inverter checkpoint (it knows its GAN: zoo or your own)")],
    name: Annotated[str, typer.Option(help="bundle folder name under --out")],
    gan: Annotated[
        Path | None, typer.Option(help="zoo GAN checkpoint (default: the inverter's; checked to be the one it inverts)")
    ] = None,
    classifier: Annotated[
        Path | None,
        typer.Option(
            help="classifier checkpoint of the data set (class-consistency, FD, classifier graph); "
            "optional — without it the metrics are PSNR / SSIM only"
        ),
    ] = None,
    out: Path = Path("models"),
    n: Annotated[int, typer.Option(help="unseen test images the manifest's metrics are measured on")] = 1000,
    refine_steps: int = 50,
    overwrite: bool = False,
    threads: int | None = None,
    exporter: ExporterOption = None,
) -> None:
    """Measure DFI / DFI^opt, export the ONNX graphs (and a zoo G's refinement weights), check parity, write the
    manifest — for an inverter of any GAN (zoo, torch code or ONNX graphs)."""
    from training.export.bundle import build_bundle

    set_threads(threads)
    chosen = _exporter(exporter)
    with user_errors():
        folder, metrics = build_bundle(gan, inverter, classifier, name, out, n, refine_steps,
                                       extra_commands=[command_line(ctx)], overwrite=overwrite,
                                       exporter=chosen)  # type: ignore[arg-type]  # fmt: skip
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"bundle: {folder}")


def export_classifier_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/fashion-mnist")],
    classifier: Annotated[Path, typer.Option(help="classifier checkpoint of the bundle's data set")],
    exporter: ExporterOption = None,
) -> None:
    """Add the data set's classifier to a bundle as classifier.onnx (image → logits), parity-checked."""
    from training.export.extras import add_classifier

    chosen = _exporter(exporter)
    with user_errors():
        result = add_classifier(bundle, classifier, command=command_line(ctx), exporter=chosen)  # type: ignore[arg-type]
    typer.echo(f"{result.folder}: classifier over {len(result.manifest.dataset.class_names)} classes")


def export_gan_checkpoint_command(
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/fashion-mnist")],
    out: Annotated[Path, typer.Option(help="checkpoint file to write (…/step-010000.safetensors)")],
) -> None:
    """Rebuild the bundle's GAN (G and D, frozen use only) as a checkpoint for `train inverter --gan`."""
    from training.export.gan_from_bundle import gan_checkpoint_from_bundle

    with user_errors():
        path = gan_checkpoint_from_bundle(bundle, out)
    typer.echo(f"GAN checkpoint: {path}")


def export_share_weights_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/emoji")],
) -> None:
    """Store each weight of a bundle once: graphs read the tensors their safetensors files hold (ONNX external data).
    Exact (outputs checked bit for bit) and idempotent; new bundles are exported this way already."""
    from training.export.shared_weights import share_bundle_weights

    with user_errors():
        saved = share_bundle_weights(bundle, command=command_line(ctx))
    for name, count in saved.items():
        typer.echo(f"{name}: {count / 2**20:.1f} MiB now read from the bundle's safetensors")


def export_directions_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/emoji")],
    kinds: Annotated[str, typer.Option(help="comma-separated: eq9 (IJCV), svm (InterFaceGAN), pca, sefa")] = (
        "eq9,svm,pca,sefa"
    ),
    components: Annotated[int, typer.Option(help="pca / sefa directions stored (top-k)")] = 5,
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime CPU threads")] = 1,
) -> None:
    """Compute the data set's named editing directions with the bundle's invert graph and store them."""
    from training.export.extras import add_directions

    with user_errors():
        chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
        result, summary = add_directions(bundle, command=command_line(ctx), kinds=chosen, n_components=components,
                                         threads=threads)  # fmt: skip
    for name, counts in summary.items():
        typer.echo(f"{name}: {counts}")
    typer.echo(f"{result.folder}: {len(summary)} directions")
