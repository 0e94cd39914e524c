"""`python -m training ...`: a thin typer CLI over the training package.

python -m training data fetch emoji
python -m training data prepare emoji
python -m training data info fashion-mnist
python -m training train gan --data fashion-mnist --loss wgan-gp --steps 4000 --seed 0
python -m training train gan --resume runs/00003-.../checkpoints/step-002000.safetensors
python -m training train classifier --data fashion-mnist --steps 3000
python -m training evaluate samples --checkpoint ... --classifier ... --n 10000
python -m training train attributes --run-dir runs/attributes/emoji          (cli_editing.py)
python -m training evaluate edits --bundle models/emoji --attributes runs/attributes/emoji/attributes.safetensors
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="DFI training: data sets, the GAN zoo, classifiers.", no_args_is_help=True)
data_app = typer.Typer(help="Fetch, prepare and inspect data sets.", no_args_is_help=True)
train_app = typer.Typer(help="Train GANs and classifiers.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Score trained models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
report_app = typer.Typer(help="Write result pages under docs/.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(report_app, name="report")
export_app = typer.Typer(help="Export model bundles (ONNX graphs + manifest) under models/.", no_args_is_help=True)
app.add_typer(export_app, name="export")

DataOpt = Annotated[str, typer.Option("--data", help="fashion-mnist | emoji | gaussians | folder")]
DataDirOpt = Annotated[
    str | None, typer.Option(help="folder of the data set (Fashion-MNIST IDX files, image folder, emoji cache)")
]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _named_paths(items: list[str], option: str) -> dict[str, Path]:
    """`NAME=PATH` option values (repeated option) → {name: path}; fails naming the bad value or repeated name."""
    named: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            _fail(f"{option} takes NAME=PATH, got {item!r}")
        if name in named:
            _fail(f"row name {name!r} given twice")
        named[name] = Path(path)
    return named


def _start_run(ctx: typer.Context, folder: Path) -> Path:
    """Create a run folder and record the resolved command in it (command.txt), before any training starts."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "command.txt").write_text(_command_line(ctx) + "\n")
    return folder


def _command_line(ctx: typer.Context) -> str:
    """The command with every option resolved (defaults included), so a run folder says exactly what ran."""
    names, node = [], ctx
    while node.parent is not None:
        names.insert(0, node.info_name or "")
        node = node.parent
    words = ["python", "-m", "training", *names]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or getattr(param, "param_type_name", "") != "option":
            continue
        if isinstance(value, bool):  # a --flag/--no-flag pair takes no value
            flag = param.opts[0] if value else next(iter(getattr(param, "secondary_opts", [])), None)
            words += [flag] if flag else []
            continue
        words += [param.opts[0], str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@data_app.command("fetch")
def data_fetch(name: str, cache_dir: DataDirOpt = None) -> None:
    """Download a data set's source files into the cache (emoji: npm pack of the two emoji packs)."""
    from training.datasets import DataSourceMissing

    try:
        if name == "emoji":
            from training.datasets import emoji

            paths = emoji.fetch(Path(cache_dir) if cache_dir else None)
            typer.echo("\n".join(str(p) for p in paths))
        elif name == "fashion-mnist":
            from training.datasets import fashion_mnist

            folder = fashion_mnist.resolve_dir(cache_dir)
            fashion_mnist.load("test", folder)
            typer.echo(f"Fashion-MNIST present in {folder}")
        elif name == "gaussians":
            typer.echo("gaussians are synthetic: nothing to fetch")
        else:
            _fail(f"unknown data set {name!r}")
    except DataSourceMissing as error:
        _fail(str(error))


@data_app.command("prepare")
def data_prepare(name: str, cache_dir: DataDirOpt = None) -> None:
    """Fetch if needed, then decode the data set into its cache (emoji → one npz of 64×64 RGB)."""
    data_fetch(name, cache_dir)
    if name == "emoji":
        from training.datasets import emoji

        typer.echo(str(emoji.prepare(Path(cache_dir) if cache_dir else None)))


@data_app.command("info")
def data_info(name: DataOpt = "fashion-mnist", data_dir: DataDirOpt = None, size: int | None = None,
              channels: int | None = None) -> None:  # fmt: skip
    """Print shapes, value ranges and label counts of each split."""
    import numpy as np

    from training.datasets import DataSourceMissing, load_dataset

    splits = ["all"] if name == "folder" else ["train", "test"]
    for split in splits:
        try:
            data = load_dataset(name, split, data_dir, size, channels)
        except (DataSourceMissing, ValueError) as error:
            _fail(str(error))
        counts = np.bincount(data.labels).tolist() if data.labels is not None else []
        typer.echo(json.dumps({"split": split, "n": len(data), "shape": data.shape, "dtype": str(data.data.dtype),
                               "min": float(data.data.min()), "max": float(data.data.max()),
                               "classes": dict(zip(data.class_names, counts, strict=False))}))  # fmt: skip


def _shape_of(name: str, data_dir: str | None, size: int | None, channels: int | None) -> tuple[int, ...]:
    if name == "fashion-mnist":
        return (1, 28, 28)
    if name == "emoji":
        return (3, 64, 64)
    if name == "gaussians":
        return (2,)
    if name == "folder":
        if not (data_dir and size and channels):
            _fail("--data folder needs --data-dir, --size and --channels")
        return (channels, size, size)  # type: ignore[return-value]
    _fail(f"unknown data set {name!r}; choose fashion-mnist, emoji, gaussians or folder")
    raise AssertionError


@train_app.command("gan")
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
    rf_pretrain_steps: int = 2_000,
    sample_every: int = 1_000,
    checkpoint_every: int = 1_000,
    log_every: int = 50,
    data_dir: DataDirOpt = None,
    size: int | None = None,
    channels: int | None = None,
    out: Annotated[Path, typer.Option(help="parent folder of run folders")] = Path("runs"),
    run_dir: Annotated[Path | None, typer.Option(help="exact run folder (default: numbered under --out)")] = None,
    resume: Annotated[Path | None, typer.Option(help="checkpoint to continue from (its config is used)")] = None,
    device: str = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Train one GAN of the zoo; writes a self-describing run folder."""
    from training.config import DataConfig, gan_config
    from training.datasets import DataSourceMissing
    from training.training_loop import next_run_dir, resume_gan, train_gan

    _set_threads(threads)
    try:
        if resume is not None:
            path = resume_gan(resume, steps=steps)
            typer.echo(f"final checkpoint: {path}")
            return
        shape = _shape_of(data, data_dir, size, channels)
        config = gan_config(
            DataConfig(data, data_dir, size, channels), shape, loss, z_dim=z_dim, g_width=g_width,
            d_width=d_width, feature_dim=feature_dim, norm=norm, lr_g=lr_g, lr_d=lr_d, beta1=beta1,
            beta2=beta2, n_critic=n_critic, steps=steps, seed=seed, batch_size=batch_size,
            rf_pretrain_steps=rf_pretrain_steps, sample_every=sample_every,
            checkpoint_every=checkpoint_every, log_every=log_every, device=device,
        )  # fmt: skip
        folder = run_dir or next_run_dir(out, f"{data}-{loss}")
        _start_run(ctx, folder)
        path = train_gan(config, folder)
    except (DataSourceMissing, ValueError, FileNotFoundError) as error:
        _fail(str(error))
    typer.echo(f"final checkpoint: {path}")


@train_app.command("classifier")
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
    from training.classifier import train_classifier
    from training.config import ClassifierTrainConfig, DataConfig
    from training.datasets import DataSourceMissing, load_dataset
    from training.networks import ClassifierConfig
    from training.training_loop import next_run_dir

    _set_threads(threads)
    try:
        probe = load_dataset(data, "test", data_dir)
        config = ClassifierTrainConfig(
            data=DataConfig(data, data_dir),
            model=ClassifierConfig(shape=probe.shape, num_classes=len(probe.class_names)),
            steps=steps, batch_size=batch_size, seed=seed, device=device,
        )  # fmt: skip
        folder = run_dir or next_run_dir(out, f"{data}-classifier")
        _start_run(ctx, folder)
        path, metrics = train_classifier(config, folder)
    except (DataSourceMissing, ValueError, FileNotFoundError) as error:
        _fail(str(error))
    typer.echo(json.dumps(metrics))
    typer.echo(f"checkpoint: {path}")


@evaluate_app.command("samples")
def evaluate_samples_command(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Option(help="GAN checkpoint")],
    classifier: Annotated[Path, typer.Option(help="classifier checkpoint of the same data set")],
    n: int = 10_000,
    seed: int = 0,
    out: Annotated[Path | None, typer.Option(help="JSON result file (default: next to the checkpoint)")] = None,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """Fréchet distance of n samples vs the real test split in the classifier's feature space."""
    from training.evaluate import evaluate_samples

    _set_threads(threads)
    try:
        result = evaluate_samples(checkpoint, classifier, n=n, seed=seed, device=device)
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
    result["command"] = _command_line(ctx)
    target = out or checkpoint.parent.parent / "sample_fd.json"
    target.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))


@report_app.command("zoo")
def report_zoo_command(
    runs: Annotated[Path, typer.Option(help="folder holding the zoo's run folders")] = Path("runs/zoo"),
    docs: Annotated[Path, typer.Option(help="docs folder: writes zoo.md and zoo/*.png")] = Path("docs"),
) -> None:
    """docs/zoo.md: sample grids, loss curves and the sample-FD table of every scored run."""
    from training.report import zoo_report

    if not runs.is_dir():
        _fail(f"no run folder {runs}; train the zoo first: bash scripts/train_zoo.sh")
    typer.echo(str(zoo_report(runs, docs)))


@report_app.command("curves")
def report_curves_command(
    run: Annotated[list[str], typer.Option(help="NAME=RUN_DIR of an inverter run; repeat per curve")],
    out: Annotated[Path, typer.Option(help="PNG to write")],
) -> None:
    """Training curves of inverter runs: held-out latent error and image MSE against the step."""
    from training.report import plot_inverter_curves

    runs = _named_paths(run, "--run")
    try:
        typer.echo(str(plot_inverter_curves(runs, out)))
    except ValueError as error:
        _fail(str(error))


@report_app.command("dfi")
def report_dfi_command(
    inverter: Annotated[list[Path], typer.Option(help="inverter checkpoints (repeat the option), one per method")],
    classifier: Annotated[Path, typer.Option(help="classifier checkpoint of the data set")],
    docs: Path = Path("docs"),
    n: int = 1000,
    refine_steps: int = 50,
    threads: int | None = None,
) -> None:
    """docs/dfi.md: every method with and without refinement on n unseen test images, and a reconstruction grid."""
    from training.report import dfi_report

    _set_threads(threads)
    typer.echo(str(dfi_report(inverter, classifier, docs, n, refine_steps)))


@export_app.command("bundle")
def export_bundle_command(
    ctx: typer.Context,
    gan: Annotated[Path, typer.Option(help="GAN checkpoint")],
    inverter: Annotated[Path, typer.Option(help="DFI inverter checkpoint of that GAN")],
    classifier: Annotated[Path, typer.Option(help="classifier checkpoint of the data set (metrics)")],
    name: Annotated[str, typer.Option(help="bundle folder name under --out")],
    out: Path = Path("models"),
    n: Annotated[int, typer.Option(help="unseen test images the manifest's metrics are measured on")] = 1000,
    refine_steps: int = 50,
    overwrite: bool = False,
    threads: int | None = None,
) -> None:
    """Measure DFI / DFI^opt, export the ONNX graphs and refinement weights, check parity, write the manifest."""
    from training.build_bundle import build_bundle

    _set_threads(threads)
    try:
        folder, metrics = build_bundle(gan, inverter, classifier, name, out, n, refine_steps,
                                       extra_commands=[_command_line(ctx)], overwrite=overwrite)  # fmt: skip
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        _fail(str(error))
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"bundle: {folder}")


@export_app.command("classifier")
def export_classifier_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/fashion-mnist")],
    classifier: Annotated[Path, typer.Option(help="classifier checkpoint of the bundle's data set")],
) -> None:
    """Add the data set's classifier to a bundle as classifier.onnx (image → logits), parity-checked."""
    from training.bundle_extras import add_classifier

    try:
        result = add_classifier(bundle, classifier, command=_command_line(ctx))
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
    typer.echo(f"{result.folder}: classifier over {len(result.manifest.dataset.class_names)} classes")


@export_app.command("gan-checkpoint")
def export_gan_checkpoint_command(
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/fashion-mnist")],
    out: Annotated[Path, typer.Option(help="checkpoint file to write (…/step-010000.safetensors)")],
) -> None:
    """Rebuild the bundle's GAN (G and D, frozen use only) as a checkpoint for `train inverter --gan`."""
    from training.gan_from_bundle import gan_checkpoint_from_bundle

    try:
        path = gan_checkpoint_from_bundle(bundle, out)
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
    typer.echo(f"GAN checkpoint: {path}")


@export_app.command("share-weights")
def export_share_weights_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option(help="bundle folder, e.g. models/emoji")],
) -> None:
    """Store each weight of a bundle once: graphs read the tensors their safetensors files hold (ONNX external data).
    Exact (outputs checked bit for bit) and idempotent; new bundles are exported this way already."""
    from dfi_core.bundle import BundleError
    from training.shared_weights import share_bundle_weights

    try:
        saved = share_bundle_weights(bundle, command=_command_line(ctx))
    except (BundleError, ValueError, FileNotFoundError) as error:
        _fail(str(error))
    for name, count in saved.items():
        typer.echo(f"{name}: {count / 2**20:.1f} MiB now read from the bundle's safetensors")


@export_app.command("directions")
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
    from training.bundle_extras import add_directions

    try:
        chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
        result, summary = add_directions(bundle, command=_command_line(ctx), kinds=chosen, n_components=components,
                                         threads=threads)  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
    for name, counts in summary.items():
        typer.echo(f"{name}: {counts}")
    typer.echo(f"{result.folder}: {len(summary)} directions")


def _register_dfi_commands() -> None:
    from training.cli_dfi import reconstruct_command, train_inverter_command
    from training.cli_editing import evaluate_edits_command, train_attributes_command

    train_app.command("inverter")(train_inverter_command)
    evaluate_app.command("reconstruction")(reconstruct_command)
    train_app.command("attributes")(train_attributes_command)
    evaluate_app.command("edits")(evaluate_edits_command)


_register_dfi_commands()

from training.cli_eval import eval_command, evaluate_inverters_command  # noqa: E402  (the top-level `eval` command)

app.command("eval")(eval_command)
evaluate_app.command("inverters")(evaluate_inverters_command)

from training.cli_experiments import report_gaussians_command  # noqa: E402

report_app.command("gaussians")(report_gaussians_command)

from training.cli_scgan import export_outpaint_command, train_scgan_command  # noqa: E402

train_app.command("scgan")(train_scgan_command)
export_app.command("outpaint")(export_outpaint_command)

from training.cli_cyclic import evaluate_cyclic_command, train_cyclic_command  # noqa: E402

train_app.command("cyclic")(train_cyclic_command)
evaluate_app.command("cyclic")(evaluate_cyclic_command)

from training.cli_experiments import report_dfeatures_command  # noqa: E402

report_app.command("dfeatures")(report_dfeatures_command)
