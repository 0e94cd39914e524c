"""CLI of latent editing: the emoji attribute classifier and the measured evaluation of editing directions
(registered in training/cli/app.py).

python -m training train attributes --run-dir runs/attributes/emoji --threads 1
python -m training evaluate edits --bundle models/emoji --attributes runs/attributes/emoji/attributes.safetensors
python -m training evaluate edits --bundle models/fashion-mnist
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import command_line, set_threads, start_run, user_errors


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
