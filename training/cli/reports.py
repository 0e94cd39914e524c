"""`report zoo | curves | dfi | gaussians | dfeatures | mode-drop | truncation`: result pages under docs/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import fail, named_paths, set_threads, user_errors


def report_gaussians_command(
    runs: Path = Path("runs/gaussians"), docs: Path = Path("docs/results/gaussians"), name: str = "gaussians"
) -> None:
    """IJCV Fig. 7: modes each inverter recovers on the 8-Gaussians test set → DOCS/NAME.{json,png}."""
    from training.reports.gaussians import run

    result = run(runs, docs, name)
    typer.echo(json.dumps({m: {k: v for k, v in r.items() if k != "per_mode"} for m, r in result["methods"].items()}))


def report_dfeatures_command(
    bundle: Path = Path("models/fashion-mnist"), out: Path = Path("docs/results/dfeatures"), n: int = 2000
) -> None:
    """IJCV Fig. 17: PCA of D^f for real vs generated images, and a linear probe's accuracy at separating them."""
    from training.reports.dfeatures import dfeatures

    typer.echo(json.dumps(dfeatures(bundle, out, n)))


def report_mode_drop_command(
    runs: Annotated[Path, typer.Option(help="the study's folder (mode_drop_study.sh)")] = Path("runs/mode-drop"),
    docs: Annotated[Path, typer.Option(help="output folder")] = Path("docs/results/mode-drop"),
) -> None:
    """Issue 23: recall and false alarms of the per-class metric and of sample counts on GANs with classes left out."""
    from training.reports.mode_drop import study, write_report

    try:
        result = study(runs)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    paths = write_report(result, runs, docs)
    typer.echo((docs / "mode-drop-table.md").read_text())
    typer.echo(json.dumps({"written": [str(p) for p in paths]}))


def report_zoo_command(
    runs: Annotated[Path, typer.Option(help="folder holding the zoo's run folders")] = Path("runs/zoo"),
    docs: Annotated[Path, typer.Option(help="docs folder: writes zoo.md and zoo/*.png")] = Path("docs"),
) -> None:
    """docs/zoo.md: sample grids, loss curves and the sample-FD table of every scored run."""
    from training.reports.pages import zoo_report

    if not runs.is_dir():
        fail(f"no run folder {runs}; train the zoo first: bash scripts/train_zoo.sh")
    typer.echo(str(zoo_report(runs, docs)))


def report_curves_command(
    run: Annotated[list[str], typer.Option(help="NAME=RUN_DIR of an inverter run; repeat per curve")],
    out: Annotated[Path, typer.Option(help="PNG to write")],
) -> None:
    """Training curves of inverter runs: held-out latent error and image MSE against the step."""
    from training.reports.pages import plot_inverter_curves

    runs = named_paths(run, "--run")
    try:
        typer.echo(str(plot_inverter_curves(runs, out)))
    except ValueError as error:
        fail(str(error))


def report_dfi_command(
    inverter: Annotated[list[Path], typer.Option(help="inverter checkpoints (repeat the option), one per method")],
    classifier: Annotated[Path, typer.Option(help="classifier checkpoint of the data set")],
    docs: Path = Path("docs"),
    n: int = 1000,
    refine_steps: int = 50,
    threads: int | None = None,
) -> None:
    """docs/dfi.md: every method with and without refinement on n unseen test images, and a reconstruction grid."""
    from training.reports.pages import dfi_report

    set_threads(threads)
    typer.echo(str(dfi_report(inverter, classifier, docs, n, refine_steps)))


def report_truncation_command(
    bundle: Annotated[Path, typer.Option(help="bundle whose GAN is truncated (rebuilt into RUNS/gan/)")] = Path(
        "models/fashion-mnist"
    ),
    classifier: Annotated[
        Path, typer.Option(help="the data set's classifier checkpoint (sample FD, IS, FD per class)")
    ] = Path("runs/zoo/fashion-mnist-classifier/classifier.safetensors"),
    gan: Annotated[Path | None, typer.Option(help="a GAN checkpoint to truncate instead of the bundle's")] = None,
    psi: Annotated[str, typer.Option(help="comma-separated ψ of G_ψ(z) = G(ψz), each in (0, 1]")] = "1,0.75,0.5,0.25",
    cn_steps: Annotated[int, typer.Option(help="DFI connection-network steps, the same for every ψ")] = 2000,
    n: Annotated[int, typer.Option(help="the first n unseen test images (reconstruction metric)")] = 10000,
    samples: Annotated[int, typer.Option(help="samples of G_ψ (sample FD, IS, MS-SSIM)")] = 10000,
    runs: Annotated[Path, typer.Option(help="folder of the G_ψ checkpoints and their inverters")] = Path(
        "runs/truncation"
    ),
    docs: Annotated[Path, typer.Option(help="output folder (a ψ whose psi-<ψ>.json is there is skipped)")] = Path(
        "docs/results/truncation"
    ),
    seed: Annotated[int, typer.Option(help="seed of every inverter, the samples and the test-image order")] = 0,
    threads: int | None = None,
) -> None:
    """Issue 23: the ICLR reconstruction metric (per class) and sample FD / IS / MS-SSIM of G_ψ(z) = G(ψz)."""
    from training.reports.truncation import truncation_report

    set_threads(threads)
    try:
        psis = tuple(float(p) for p in psi.split(",") if p.strip())
    except ValueError:
        fail(f"--psi takes comma-separated numbers, got {psi!r}")
    with user_errors():
        truncation_report(bundle, classifier, runs, docs, gan, psis, cn_steps, n, samples, seed)
    typer.echo((docs / "truncation-table.md").read_text())
    typer.echo(json.dumps({"written": str(docs / "truncation.json")}))
