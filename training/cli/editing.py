"""CLI of latent editing: the emoji attribute classifier and the measured evaluation of editing directions
(registered in training/cli/app.py).

python -m training train attributes --run-dir runs/attributes/emoji --threads 1
python -m training evaluate edits --bundle models/emoji --attributes runs/attributes/emoji/attributes.safetensors
python -m training evaluate edits --bundle models/fashion-mnist
python -m training export folder-directions --bundle models/my-gan --images photos/ --pairs neutral:smiling
python -m training export folder-directions --bundle models/my-gan --images photos/ --kinds eq9,svm,pca,sefa
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import command_line, fail, set_threads, start_run, user_errors


def train_attributes_command(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Option(help="run folder: attributes.safetensors, metrics.json, config.json")] = Path(
        "runs/attributes/emoji"
    ),
    steps: int = 1_500,
    batch_size: int = 64,
    width: Annotated[int, typer.Option(help="channels of the first conv of the ConvEncoder trunk")] = 32,
    lr: float = 2e-3,
    seed: int = 0,
    holdout_person_hair: Annotated[
        bool, typer.Option(help="train without the gender-neutral hair emoji and score the hair heads on them")
    ] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = 1,
) -> None:
    """Train the emoji attribute classifier (gender, skin tone, five hair styles) on the train split."""
    from training.classifiers.attributes import AttributeTrainConfig, train_attributes

    set_threads(threads)
    config = AttributeTrainConfig(
        width=width, steps=steps, batch_size=batch_size, lr=lr, seed=seed, holdout_person_hair=holdout_person_hair
    )
    with user_errors():
        start_run(ctx, run_dir, config)
        path, metrics = train_attributes(config, run_dir)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"checkpoint: {path}")


def evaluate_edits_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option(help="bundle folder with directions, e.g. models/emoji")],
    attributes: Annotated[
        Path | None, typer.Option(help="emoji attribute-classifier checkpoint (needed for emoji bundles)")
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for <dataset>.json, <dataset>-tables.md and figures")] = Path(
        "docs/results/editing"
    ),
    n: Annotated[int, typer.Option(help="at most this many held-out test images per direction")] = 200,
    strengths: Annotated[str, typer.Option(help="comma-separated strengths of the sweep")] = "0.5,1,2",
    seed: int = 0,
    threads: Annotated[int | None, typer.Option(help="torch and ONNX Runtime CPU threads")] = 1,
) -> None:
    """Flip rate and entanglement of every direction of a bundle on held-out test images; figures."""
    from training.editing.evaluate import evaluate_edits

    set_threads(threads)
    with user_errors():
        values = tuple(float(s) for s in strengths.split(",") if s.strip())
        result = evaluate_edits(
            bundle, attributes, out, n=n, strengths=values, seed=seed, threads=threads, command=command_line(ctx)
        )
    typer.echo(result["tables"])
    typer.echo(f"results: {out}")


def _pairs(text: str | None) -> list[tuple[str, str]]:
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        source, sep, target = item.strip().partition(":")
        if not sep or not source or not target:
            fail(f"--pairs takes SOURCE:TARGET label pairs separated by commas, got {item.strip()!r}")
        pairs.append((source, target))
    return pairs


def export_folder_directions_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/my-gan (any bundle, a foreign GAN's too)")],
    images: Annotated[
        Path, typer.Option(help="labelled images: ROOT/<label>/*.png (deeper folders name eq. 9's groups)")
    ],
    kinds: Annotated[
        str,
        typer.Option(
            help="comma-separated: eq9 (IJCV), svm (InterFaceGAN), pca, sefa (G's first Linear on z, read "
            "from generator.onnx for a foreign GAN)"
        ),
    ] = "eq9,svm,pca",
    pairs: Annotated[
        str | None, typer.Option(help="also SOURCE:TARGET directions between two labels, comma-separated")
    ] = None,
    components: Annotated[int, typer.Option(help="pca / sefa directions stored (top-k)")] = 5,
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime CPU threads")] = 1,
) -> None:
    """Editing directions from a folder of labelled images, inverted with the bundle's own inverter, written into
    the bundle (replacing its directions) so that the service's /edit serves them: one per label (that label
    against the others), one per --pairs pair; eq. 9 averages over the sub-folder groups. sefa needs no labels: the
    top eigenvectors of AᵀA, A = G's first layer on z (read from generator.onnx where the bundle has no zoo G),
    refused with the op G starts with when that is not a Linear."""
    from dfi_core.bundle import load_bundle
    from training.editing.directions import DIRECTION_KINDS, first_layer_of
    from training.editing.folder_directions import check_specs, folder_latents, folder_specs, load_labelled_folder
    from training.export.extras import store_directions

    wanted = _pairs(pairs)
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
    if not chosen or set(chosen) - set(DIRECTION_KINDS):
        fail(f"--kinds takes some of {', '.join(DIRECTION_KINDS)}, got {kinds!r}")
    if components < 1:
        fail(f"--components must be ≥ 1, got {components}")
    with user_errors():
        loaded = load_bundle(bundle)
        image = loaded.manifest.image
        if image.height != image.width:
            raise ValueError(f"bundle {loaded.name}: images {image.height}×{image.width} are not square; the "
                             "service's image reading (and this command's) makes square images")  # fmt: skip
        data = load_labelled_folder(images, image.channels, image.height)
        specs = folder_specs(data.labels, wanted)
        check_specs(loaded, data.rows, specs, chosen)  # every error before the bundle is touched
        latents = folder_latents(loaded, data, threads)
        result, summary = store_directions(loaded, latents, data.rows, specs, chosen, components, command_line(ctx))
        sefa_layer = first_layer_of(result).describe() if "sefa" in chosen else None
    typer.echo(f"{images}: {len(data.labels)} images, " + ", ".join(f"{k} {v}" for k, v in data.counts().items()))
    if data.skipped:
        typer.echo(f"skipped {len(data.skipped)} file(s), e.g. {data.skipped[0]}")
    if sefa_layer is not None:
        typer.echo(f"SeFa: A = {sefa_layer}")
    for name, counts in summary.items():
        typer.echo(f"{name}: {counts}")
    typer.echo(f"{result.folder}: {len(summary)} directions")
