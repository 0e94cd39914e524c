"""CLI of the cyclic baselines (VAE, ALI/BiGAN, ALICE; registered in training/cli/app.py).

python -m training train cyclic --model vae --run-dir runs/cyclic/fashion-mnist-vae --steps 3000 --seed 0 --threads 1
python -m training evaluate cyclic --runs runs/cyclic \
    --classifier runs/zoo/fashion-mnist-classifier/classifier.safetensors --n 1000 --repeats 5 --out docs/results/cyclic
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import command_line, set_threads, start_run, user_errors


def train_cyclic_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="vae | ali | alice")] = "vae",
    data: Annotated[str, typer.Option("--data", help="data set: fashion-mnist | emoji")] = "fashion-mnist",
    data_dir: Annotated[str | None, typer.Option(help="folder of the data set's files")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="run folder (default runs/cyclic/DATA-MODEL)")] = None,
    steps: int = 3_000,
    batch_size: int = 64,
    lr: float = 2e-4,
    beta1: float = 0.5,
    z_dim: int = 64,
    g_width: int = 64,
    d_width: Annotated[int, typer.Option(help="joint discriminator conv width (ALI/ALICE)")] = 32,
    d_hidden: Annotated[int, typer.Option(help="joint discriminator MLP width (ALI/ALICE)")] = 256,
    recon_weight: Annotated[float, typer.Option(help="ALICE-l2 weight λ of mean (x − G(E(x)))²")] = 1.0,
    sample_every: int = 500,
    checkpoint_every: int = 500,
    seed: int = 0,
    device: str = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = 1,
) -> None:
    """Train a VAE, ALI/BiGAN or ALICE with the zoo's DCGAN generator; writes RUN/checkpoints/step-*.safetensors."""
    from training.cyclic.model import CyclicConfig, train_cyclic

    set_threads(threads)
    run_dir = run_dir or Path(f"runs/cyclic/{data}-{model}")
    with user_errors():
        from training.datasets import load_dataset

        shape = load_dataset(data, "test", data_dir).shape  # the images' (C, H, W): emoji is (3, 64, 64)
        config = CyclicConfig(model=model, data=data, data_dir=data_dir, shape=shape, z_dim=z_dim, g_width=g_width,
                              d_width=d_width, d_hidden=d_hidden, recon_weight=recon_weight, steps=steps,
                              batch_size=batch_size, lr=lr, beta1=beta1, seed=seed, sample_every=sample_every,
                              checkpoint_every=checkpoint_every, device=device)  # fmt: skip
        config.validate()
        start_run(ctx, run_dir, config)
        path = train_cyclic(config, run_dir)
    typer.echo(f"checkpoint: {path}")


def evaluate_cyclic_command(
    ctx: typer.Context,
    runs: Annotated[Path, typer.Option(help="folder of cyclic run folders (each with checkpoints/)")] = Path(
        "runs/cyclic"
    ),
    classifier: Annotated[Path, typer.Option(help="classifier checkpoint: FD features")] = Path(
        "runs/zoo/fashion-mnist-classifier/classifier.safetensors"
    ),
    bundle: Annotated[Path | None, typer.Option(help="DFI bundle scored on the same images (row `dfi`)")] = Path(
        "models/fashion-mnist"
    ),
    data: Annotated[str, typer.Option("--data", help="data set of the runs: fashion-mnist | emoji")] = "fashion-mnist",
    n: int = 1000,
    repeats: int = 5,
    samples: Annotated[int, typer.Option(help="G(z) samples for the sample FD (vs as many real test images)")] = 10_000,
    seed: int = 0,
    out: Path = Path("docs/results/cyclic"),
    threads: Annotated[int | None, typer.Option(help="torch / ONNX Runtime CPU threads")] = 1,
) -> None:
    """Score G(E(x)) like `python -m training eval` scores DFI, plus the sample FD of G(z); writes OUT/cyclic.json."""
    from training.cyclic.evaluate import evaluate_cyclic_runs, write_cyclic_report

    set_threads(threads)
    with user_errors():
        result = evaluate_cyclic_runs(runs, classifier, bundle, n=n, repeats=repeats, n_samples=samples, seed=seed,
                                      data_name=data)  # fmt: skip
        result["command"] = command_line(ctx)
        paths = write_cyclic_report(result, out)
    typer.echo(json.dumps({k: {m: round(v["mean"], 4) for m, v in row.items()} for k, row in result["table"].items()}))
    typer.echo(" ".join(str(p) for p in paths))
