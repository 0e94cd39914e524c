"""`python -m training eval`: the metric table of a shipped bundle (training/evaluation/bundle.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def eval_command(
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/fashion-mnist")],
    methods: Annotated[str, typer.Option(help="comma-separated: dfi, dfi_opt, opt")] = "dfi,dfi_opt",
    n: Annotated[int, typer.Option(help="unseen test images per repeat")] = 1000,
    repeats: Annotated[int, typer.Option(help="disjoint blocks of n test images")] = 5,
    refine_steps: int = 50,
    classifier: Annotated[Path | None, typer.Option(help="classifier checkpoint: adds the domain FD")] = None,
    out: Annotated[Path, typer.Option(help="folder for <bundle>.json/.md/.png")] = Path("docs/results/bundles"),
    threads: int | None = None,
) -> None:
    """PSNR / SSIM / MS-SSIM / class-consistency (/ FD) of a bundle's methods, mean ± std over repeats."""
    import torch

    from training.evaluation.bundle import evaluate_bundle, write_report

    if threads:
        torch.set_num_threads(threads)
    try:
        result = evaluate_bundle(bundle, [m.strip() for m in methods.split(",") if m.strip()], n, repeats,
                                 refine_steps, classifier)  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    paths = write_report(result, out)
    typer.echo(paths[1].read_text())
    typer.echo(json.dumps({"written": [str(p) for p in paths]}))


def evaluate_inverters_command(
    inverter: Annotated[list[str], typer.Option(help="NAME=PATH of an inverter.safetensors; repeat per row")],
    classifier: Annotated[Path, typer.Option(help="the data set's classifier checkpoint (class-consistency, FD)")],
    n: Annotated[int, typer.Option(help="unseen test images per repeat")] = 1000,
    repeats: Annotated[int, typer.Option(help="disjoint blocks of n test images")] = 5,
    refine_steps: Annotated[int, typer.Option(help="also score each row after this many eq. 2 Adam steps")] = 0,
    sample_fd: Annotated[bool, typer.Option(help="add each GAN's sample FD (10,000 samples vs the test set)")] = False,
    name: Annotated[str, typer.Option(help="file stem of <name>.json/.md/.png")] = "inverters",
    out: Annotated[Path, typer.Option(help="output folder")] = Path("docs/results/inverters"),
    threads: int | None = None,
) -> None:
    """Score several trained inverters of one data set (GAN zoo, sec. 4.7 sweeps), mean ± std over repeats."""
    import torch

    from training.evaluation.inverters import evaluate_inverters, write_inverter_report

    if threads:
        torch.set_num_threads(threads)
    from training.cli.common import named_paths

    rows = named_paths(inverter, "--inverter")
    try:
        result = evaluate_inverters(rows, classifier, n, repeats, refine_steps, sample_fd)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    paths = write_inverter_report(result, out, name)
    typer.echo(paths[1].read_text())
    typer.echo(json.dumps({"written": [str(p) for p in paths]}))
