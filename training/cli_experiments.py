"""Report commands for the papers' small experiments (registered in training/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def report_gaussians_command(
    runs: Path = Path("runs/gaussians"), docs: Path = Path("docs/results/gaussians"), name: str = "gaussians"
) -> None:
    """IJCV Fig. 7: modes each inverter recovers on the 8-Gaussians test set → DOCS/NAME.{json,png}."""
    from training.experiment_gaussians import run

    result = run(runs, docs, name)
    typer.echo(json.dumps({m: {k: v for k, v in r.items() if k != "per_mode"} for m, r in result["methods"].items()}))


def report_dfeatures_command(
    bundle: Path = Path("models/fashion-mnist"), out: Path = Path("docs/results/dfeatures"), n: int = 2000
) -> None:
    """IJCV Fig. 17: PCA of D^f for real vs generated images, and a linear probe's accuracy at separating them."""
    from training.experiment_dfeatures import dfeatures

    typer.echo(json.dumps(dfeatures(bundle, out, n)))
