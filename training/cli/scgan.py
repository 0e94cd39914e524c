"""CLI of the SCGAN outpainting model (registered in training/cli/app.py).

python -m training train scgan --data fashion-mnist --run-dir runs/scgan/fashion-mnist --seed 0
python -m training export outpaint --bundle models/fashion-mnist --scgan runs/scgan/fashion-mnist/scgan.safetensors
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import command_line, set_threads, start_run, user_errors


def train_scgan_command(
    ctx: typer.Context,
    data: Annotated[str, typer.Option("--data", help="data set (fashion-mnist)")] = "fashion-mnist",
    data_dir: Annotated[str | None, typer.Option(help="folder of the data set's files")] = None,
    run_dir: Annotated[Path, typer.Option(help="run folder")] = Path("runs/scgan/fashion-mnist"),
    steps: Annotated[int, typer.Option(help="G_full steps (stage 3)")] = 2_500,
    patch_steps: Annotated[int, typer.Option(help="patch GAN steps (stage 1)")] = 5_000,
    dfi_steps: Annotated[int, typer.Option(help="patch DFI steps (stage 2)")] = 3_000,
    patch_top: int = 7,
    patch_left: int = 7,
    patch_size: Annotated[int, typer.Option(help="side of the square patch (7·2^k or 4·2^k)")] = 14,
    z_center: int = 32,
    z_edge: int = 32,
    g_width: Annotated[int, typer.Option(help="DCGAN ngf of G_center and G_full")] = 64,
    d_width: Annotated[int, typer.Option(help="DCGAN ndf of every discriminator")] = 32,
    alpha: Annotated[float, typer.Option(help="weight of the latent consistency term (eq. 8)")] = 10.0,
    gamma: Annotated[float, typer.Option(help="zero-centred gradient penalty on real images")] = 10.0,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = 1,
) -> None:
    """Train an SCGAN (patch GAN, its DFI, then G_full) and write RUN/scgan.safetensors."""
    from training.scgan.model import SCGANConfig, train_scgan

    set_threads(threads)
    with user_errors():
        from training.datasets import load_dataset

        image_shape = load_dataset(data, "test", data_dir).shape  # the images' (C, H, W): emoji is (3, 64, 64)
        config = SCGANConfig(data=data, data_dir=data_dir, shape=image_shape, patch_top=patch_top,
                             patch_left=patch_left, patch_size=patch_size, z_center=z_center, z_edge=z_edge,
                             g_width=g_width, d_width=d_width, alpha=alpha, gamma=gamma,
                             patch_steps=patch_steps, dfi_steps=dfi_steps, full_steps=steps, batch_size=batch_size,
                             seed=seed, device=device)  # fmt: skip
        config.validate()
        start_run(ctx, run_dir, config)
        path = train_scgan(config, run_dir)
    typer.echo(f"checkpoint: {path}")


def export_outpaint_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option(help="existing bundle folder, e.g. models/fashion-mnist")],
    scgan: Annotated[Path, typer.Option(help="SCGAN checkpoint (RUN/scgan.safetensors)")],
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = 1,
) -> None:
    """Add outpaint.onnx (patch, z_edge → image) and scgan.safetensors to a bundle; parity-checked."""
    from training.export.outpaint import add_outpaint

    set_threads(threads)
    with user_errors(RuntimeError):
        _, errors = add_outpaint(bundle, scgan, command=command_line(ctx))
    typer.echo(json.dumps({"parity_max_abs_error": errors}, indent=2))


def evaluate_scgan_command(
    scgan: Annotated[Path, typer.Option(help="SCGAN run checkpoint (RUN/scgan.safetensors)")],
    classifier: Annotated[Path, typer.Option(help="Fashion-MNIST classifier checkpoint (domain FD)")] = Path(
        "runs/zoo/fashion-mnist-classifier/classifier.safetensors"
    ),
    out: Annotated[Path, typer.Option(help="folder for metrics.json and figures")] = Path("docs/results/scgan"),
    n: int = 1000,
    seed: int = 0,
    threads: int = 1,
) -> None:
    """SCGAN outpainting (IJCV sec. 3.3): patch fidelity, diversity and the domain FD of the full images."""
    from training.scgan.evaluate import evaluate_scgan

    set_threads(threads)
    with user_errors():
        result = evaluate_scgan(scgan, classifier, out, n=n, seed=seed)
    typer.echo(json.dumps(result, indent=2))
