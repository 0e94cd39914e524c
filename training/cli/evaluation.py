"""`python -m training eval`: the metric table of a shipped bundle (training/evaluation/bundle.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import named_paths, set_threads, user_errors


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

    from training.evaluation.bundle import evaluate_bundle, write_report

    set_threads(threads)
    with user_errors():
        result = evaluate_bundle(bundle, [m.strip() for m in methods.split(",") if m.strip()], n, repeats,
                                 refine_steps, classifier)  # fmt: skip
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
    from training.evaluation.inverters import evaluate_inverters, write_inverter_report

    set_threads(threads)
    rows = named_paths(inverter, "--inverter")
    with user_errors():
        result = evaluate_inverters(rows, classifier, n, repeats, refine_steps, sample_fd)
    paths = write_inverter_report(result, out, name)
    typer.echo(paths[1].read_text())
    typer.echo(json.dumps({"written": [str(p) for p in paths]}))


def gan_metric_command(
    bundle: Annotated[Path, typer.Option(help="bundle folder (invert.onnx, generator.onnx, classifier.onnx)")],
    n: Annotated[int, typer.Option(help="the first n unseen test images")] = 1000,
    method: Annotated[str, typer.Option(help="dfi, or dfi_opt (+ --refine-steps Adam steps of eq. 2)")] = "dfi",
    refine_steps: int = 50,
    classifier: Annotated[
        Path | None,
        typer.Option(help="classifier checkpoint: FD in its penultimate features instead of classifier.onnx's logits"),
    ] = None,  # fmt: skip
    fd_n: Annotated[int | None, typer.Option(help="images per class for FD (default: the smallest class)")] = None,
    k: Annotated[float | None, typer.Option(help="flag threshold in robust z units (default 3.5)")] = None,
    reference: Annotated[
        Path | None, typer.Option(help="a gan-metric JSON of a reference GAN: flag on the per-class difference to it")
    ] = None,  # fmt: skip
    name: Annotated[str | None, typer.Option(help="file stem (default <bundle>-per-class)")] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("docs/results/gan-metric"),
    threads: int | None = None,
) -> None:
    """The ICLR reconstruction metric per class: PSNR, SSIM, class-consistency and FD per class of the unseen
    test images, classes far below the others flagged (rule: dfi_core/per_class.py, and the JSON's `rule`)."""

    from dfi_core.per_class import FLAG_K
    from training.evaluation.per_class import evaluate_gan_metric, write_gan_metric_report

    set_threads(threads)
    with user_errors(KeyError):
        result = evaluate_gan_metric(bundle, n, method, refine_steps, classifier, fd_n,
                                     FLAG_K if k is None else k, reference)  # fmt: skip
    paths = write_gan_metric_report(result, out, name)
    typer.echo(paths[1].read_text())
    typer.echo(json.dumps({"flagged": result["per_class"]["flagged"], "written": [str(p) for p in paths]}))


def robustness_command(
    classifier: Annotated[Path, typer.Option(help="the data set's classifier checkpoint (FD and LPIPS-style spaces)")],
    n: Annotated[int, typer.Option(help="the first n test images (FD: n originals vs their n copies)")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the random translations (the same for both paddings)")] = 0,
    name: Annotated[str, typer.Option(help="file stem of <name>.json/.md/-*.png")] = "robustness",
    out: Annotated[Path, typer.Option(help="output folder")] = Path("docs/results/robustness"),
    device: str = "cpu",
    threads: int | None = None,
) -> None:
    """IJCV Figs. 2–5 analogue: FD (stand-in for FID) and an LPIPS-style distance (stand-in for LPIPS) between real
    test images and fish-eye distorted / randomly translated (raw vs reflection padding) copies."""

    from training.evaluation.robustness import robustness_study, write_robustness_report

    set_threads(threads)
    with user_errors():
        result = robustness_study(classifier, n, seed=seed, device=device)
    paths = write_robustness_report(result, out, name)
    typer.echo(paths[1].read_text())
    typer.echo(json.dumps({"written": [str(p) for p in paths]}))
