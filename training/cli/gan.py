"""`train gan`, `train classifier`, `evaluate samples`: the GAN zoo and the data set's classifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import (
    DataDirOpt,
    DataOpt,
    class_indices,
    command_line,
    fail,
    set_threads,
    shape_of,
    start_run,
    user_errors,
)


def train_gan_command(
    ctx: typer.Context,
    data: DataOpt = "fashion-mnist",
    loss: Annotated[str, typer.Option(help="dcgan | lsgan | wgan-gp | sngan | dfm | rfgan")] = "dcgan",
    steps: Annotated[int, typer.Option(help="generator steps")] = 10_000,
    seed: int = 0,
    batch_size: int = 64,
    z_dim: int = 64,
    g_width: int = 64,
    d_width: int = 32,
    feature_dim: Annotated[int, typer.Option(help="size of D's last feature layer (D^f); 0 = flattened conv")] = 512,
    norm: Annotated[str | None, typer.Option(help="D normalisation; default: the loss's published one")] = None,
    lr_g: float | None = None,
    lr_d: float | None = None,
    beta1: float | None = None,
    beta2: float | None = None,
    n_critic: int | None = None,
    hinge: Annotated[bool, typer.Option(help="hinge adversarial loss instead of the objective's own")] = False,
    ema_decay: Annotated[
        float, typer.Option(help="EMA of G's weights, e.g. 0.999 (0 = off); the EMA G is shipped")
    ] = 0.0,
    augment: Annotated[str, typer.Option(help="DiffAugment policy for D's inputs: color,translation,cutout")] = "",
    fd_classifier: Annotated[
        Path | None, typer.Option(help="classifier checkpoint: sample FD along training (fd.jsonl, fd_curve.png)")
    ] = None,
    fd_every: Annotated[int, typer.Option(help="steps between FD scores (0 = every checkpoint)")] = 0,
    fd_samples: int = 2_000,
    rf_pretrain_steps: int = 2_000,
    sample_every: int = 1_000,
    checkpoint_every: int = 1_000,
    log_every: int = 50,
    data_dir: DataDirOpt = None,
    size: int | None = None,
    channels: int | None = None,
    exclude_classes: Annotated[
        str | None, typer.Option(help="classes left out of the training data, names or indices: 'trouser,8'")
    ] = None,
    out: Annotated[Path, typer.Option(help="parent folder of run folders")] = Path("runs"),
    run_dir: Annotated[Path | None, typer.Option(help="exact run folder (default: numbered under --out)")] = None,
    resume: Annotated[Path | None, typer.Option(help="checkpoint to continue from (its config is used)")] = None,
    device: str = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Train one GAN of the zoo; writes a self-describing run folder."""
    from training.core.runs import next_run_dir
    from training.datasets.config import DataConfig
    from training.evaluation.samples import sample_fd_for
    from training.gan.config import gan_config
    from training.gan.train import resume_gan, train_gan

    set_threads(threads)
    with user_errors():
        if resume is not None:
            path = resume_gan(resume, steps=steps, sample_fd_for=sample_fd_for)
            typer.echo(f"final checkpoint: {path}")
            return
        shape = shape_of(data, data_dir, size, channels)
        left_out = class_indices(data, data_dir, exclude_classes)
        config = gan_config(
            DataConfig(data, data_dir, size, channels, left_out), shape, loss, z_dim=z_dim, g_width=g_width,
            d_width=d_width, feature_dim=feature_dim, norm=norm, lr_g=lr_g, lr_d=lr_d, beta1=beta1,
            beta2=beta2, n_critic=n_critic, hinge=hinge, ema_decay=ema_decay, augment=augment,
            fd_classifier=str(fd_classifier.resolve()) if fd_classifier else None, fd_every=fd_every,
            fd_samples=fd_samples, steps=steps, seed=seed, batch_size=batch_size,
            rf_pretrain_steps=rf_pretrain_steps, sample_every=sample_every,
            checkpoint_every=checkpoint_every, log_every=log_every, device=device,
        )  # fmt: skip
        folder = run_dir or next_run_dir(out, f"{data}-{loss}")
        start_run(ctx, folder, config)
        path = train_gan(config, folder, sample_fd_for=sample_fd_for)
    typer.echo(f"final checkpoint: {path}")


def train_classifier_command(
    ctx: typer.Context,
    data: DataOpt = "fashion-mnist",
    steps: int = 3_000,
    seed: int = 0,
    batch_size: int = 128,
    data_dir: DataDirOpt = None,
    out: Path = Path("runs"),
    run_dir: Path | None = None,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """Train the data set's classifier (feature space of the domain FD; class-consistency judge)."""
    from training.classifiers.classifier import train_classifier
    from training.classifiers.config import ClassifierTrainConfig
    from training.classifiers.networks import ClassifierConfig
    from training.core.runs import next_run_dir
    from training.datasets import load_dataset
    from training.datasets.config import DataConfig

    set_threads(threads)
    with user_errors():
        probe = load_dataset(data, "test", data_dir)
        config = ClassifierTrainConfig(
            data=DataConfig(data, data_dir),
            model=ClassifierConfig(shape=probe.shape, num_classes=len(probe.class_names)),
            steps=steps, batch_size=batch_size, seed=seed, device=device,
        )  # fmt: skip
        folder = run_dir or next_run_dir(out, f"{data}-classifier")
        start_run(ctx, folder, config)
        path, metrics = train_classifier(config, folder)
    typer.echo(json.dumps(metrics))
    typer.echo(f"checkpoint: {path}")


def evaluate_samples_command(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Option(help="GAN checkpoint")],
    classifier: Annotated[Path, typer.Option(help="classifier checkpoint of the same data set")],
    n: int = 10_000,
    seed: int = 0,
    pairs: Annotated[int, typer.Option(help="random sample pairs for the MS-SSIM diversity (each set)")] = 1000,
    out: Annotated[Path | None, typer.Option(help="JSON result file (default: next to the checkpoint)")] = None,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """Sample quality and diversity: Fréchet distance of n samples vs the real test split in the classifier's
    feature space, per-class sample counts, the classifier IS (Inception score with the data set's classifier in
    place of Inception) and the MS-SSIM diversity of random sample pairs — each beside the real test images'."""
    from training.core.runs import RunDir
    from training.evaluation.samples import evaluate_samples

    set_threads(threads)
    with user_errors():
        result = evaluate_samples(checkpoint, classifier, n=n, seed=seed, device=device, pairs=pairs)
    result["command"] = command_line(ctx)
    try:
        target = out or RunDir.of_checkpoint(checkpoint).sample_fd_path
    except ValueError as error:
        fail(f"{error}; pass --out")
    target.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))
