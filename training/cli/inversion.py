"""CLI of the inverters: train DFI and its ablations, score reconstructions (registered in training/cli/app.py).

python -m training train inverter --gan runs/00003-.../checkpoints/step-010000.safetensors --method dfi
python -m training train inverter --gan ... --method dfi --taps actv7-0,last --pool-size 4
python -m training train inverter --gan ... --method dfi --feature-network classifier \
    --feature-classifier runs/zoo/fashion-mnist-classifier/classifier.safetensors        # IJCV 4.6, "DFI – VGG16"
python -m training train inverter --generator my_gan.py:make_g --generator-weights G.safetensors \
    --discriminator my_gan.py:make_d --discriminator-weights D.safetensors --data fashion-mnist
python -m training train inverter --generator-onnx G.onnx --discriminator-onnx D.onnx --features h4 --data emoji
python -m training evaluate reconstruction --inverter runs/00007-.../inverter.safetensors --n 1000 --refine-steps 50
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from training.cli.common import command_line, fail, set_threads, start_run, user_errors


def train_inverter_command(
    ctx: typer.Context,
    gan: Annotated[Path | None, typer.Option(help="zoo GAN checkpoint; its G and D stay frozen")] = None,
    generator: Annotated[str | None, typer.Option(help="your G: MODULE:FACTORY or path/to/gan.py:FACTORY")] = None,
    discriminator: Annotated[str | None, typer.Option(help="your D: MODULE:FACTORY or path/to/gan.py:FACTORY")] = None,
    generator_weights: Annotated[str | None, typer.Option(help="G's weights: .safetensors or a state dict")] = None,
    discriminator_weights: Annotated[str | None, typer.Option(help="D's weights: .safetensors or a state dict")] = None,
    generator_onnx: Annotated[str | None, typer.Option(help="your G as an ONNX graph (z → image)")] = None,
    discriminator_onnx: Annotated[str | None, typer.Option(help="your D as an ONNX graph (image → ...)")] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="D^f of your D: comma-separated module names (NAME, or NAME:input for a module's input) or, with "
            "--discriminator-onnx, tensor names; default: the input of D's last Linear / Gemm"
        ),
    ] = None,
    z_dim: Annotated[int | None, typer.Option(help="your G's latent size (default: read from G)")] = None,
    prior: Annotated[str, typer.Option(help="your G's latent prior: normal | uniform")] = "normal",
    value_range: Annotated[str | None, typer.Option(help="your G's output range LOW,HIGH (default: measured)")] = None,
    trust_pickle: Annotated[
        bool, typer.Option(help="allow weights that are whole pickled modules (runs code)")
    ] = False,
    data: Annotated[
        str | None, typer.Option("--data", help="with your GAN: its data set (fashion-mnist | emoji | folder)")
    ] = None,
    data_dir: Annotated[str | None, typer.Option(help="with --data: the data set's folder")] = None,
    size: Annotated[int | None, typer.Option(help="with --data folder: image side")] = None,
    channels: Annotated[int | None, typer.Option(help="with --data folder: 1 or 3")] = None,
    method: Annotated[str, typer.Option(help="dfi | dfi_image | enc_latent | enc_image (IJCV Table 1)")] = "dfi",
    taps: Annotated[str, typer.Option(help="comma-separated D taps forming D^f, e.g. actv7-0,last (4.7)")] = "last",
    pool_size: Annotated[int, typer.Option(help="R: intermediate taps are average-pooled to R×R (Table 5)")] = 4,
    feature_network: Annotated[
        str,
        typer.Option(
            help="CN's input: discriminator (D^f) | classifier (a frozen classifier's penultimate "
            "features, IJCV 4.6's DFI – VGG16 analogue; no --taps / --pool-size)"
        ),
    ] = "discriminator",
    feature_classifier: Annotated[
        Path | None, typer.Option(help="with --feature-network classifier: its classifier.safetensors")
    ] = None,  # fmt: skip
    depth: Annotated[int, typer.Option(help="hidden FC layers of the connection network (Table 7)")] = 2,
    hidden: Annotated[int, typer.Option(help="connection network width (multiple of 32, ≥ 128)")] = 1024,
    latent_loss: Annotated[str, typer.Option(help="d(z, ẑ) of eq. 5: mse | l1")] = "mse",
    steps: int = 20_000,
    batch_size: int = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate, cosine-decayed to 0")] = 1e-3,
    seed: int = 0,
    log_every: int = 100,
    sample_every: int = 2_000,
    out: Annotated[Path, typer.Option(help="parent folder of run folders")] = Path("runs"),
    run_dir: Annotated[Path | None, typer.Option(help="exact run folder (default: numbered under --out)")] = None,
    device: str = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Train an inverter of a frozen GAN; writes a self-describing run folder with inverter.safetensors.

    The same command again in the same --run-dir says the inverter is done (or, if that run stopped before its
    checkpoint, trains it again from step 0); another command there is refused. Your files are recorded with
    absolute paths and the sha256 of each .onnx / weights file, and a file that changed since is refused by name."""
    from training.core.runs import RunDir, next_run_dir
    from training.core.torch_utils import resolve_device
    from training.datasets.config import DataConfig
    from training.inversion.adapter import GANSource
    from training.inversion.dfi import InverterConfig, open_adapter, train_inverter

    set_threads(threads)
    feature_config = _feature_config(feature_network, feature_classifier, taps, pool_size)
    source = None
    torch_given, onnx_given = bool(generator or discriminator), bool(generator_onnx or discriminator_onnx)
    if sum([gan is not None, torch_given, onnx_given]) != 1:
        fail(
            "give one GAN: --gan (a zoo checkpoint), or --generator and --discriminator (torch code), or "
            "--generator-onnx and --discriminator-onnx (ONNX graphs)"
        )
    if gan is None:
        if data is None:
            fail("your GAN needs --data: the data set whose test images it is scored on")
        with user_errors():
            source = GANSource(
                kind="torch" if torch_given else "onnx",
                generator=(generator if torch_given else generator_onnx) or "",
                discriminator=(discriminator if torch_given else discriminator_onnx) or "",
                generator_weights=generator_weights, discriminator_weights=discriminator_weights,
                features=tuple(f.strip() for f in (features or "").split(",") if f.strip()),
                z_dim=z_dim, prior=prior, value_range=_value_range(value_range), trust_pickle=trust_pickle,
            )  # fmt: skip
    config = InverterConfig(
        gan_checkpoint=str(gan) if gan is not None else "", source=source,
        data=DataConfig(data, data_dir, size, channels) if source is not None else None, method=method,
        hidden=hidden, depth=depth, latent_loss=latent_loss,
        features=feature_config,
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, log_every=log_every, sample_every=sample_every,
        device=device,
    )  # fmt: skip
    fresh = run_dir is None or not run_dir.exists()  # next_run_dir makes its folder: tell before it does
    with user_errors():
        gan_config = config.validate()  # every cross-field error before a folder is made
        if config.source is not None:  # absolute paths and the sha256 of the user's files, before any folder exists
            config.source = config.source.pinned()
        if config.features.classifier is not None:  # the same for the feature classifier (path, sha256, architecture)
            config.features.classifier = config.features.classifier.pinned()
        name = f"{gan_config.data.name}-{gan_config.loss.name}" if gan_config else f"{data}-{source.kind}-gan"  # type: ignore[union-attr]
        suffix = "-classifier" if config.features.uses_classifier else ""
        folder = run_dir or next_run_dir(out, f"{name}-{method}{suffix}")
    run = RunDir(folder)
    try:
        with user_errors():
            _check_recorded_files(run, config)
            # The GAN opens first: a user's torch code resolves its contracts and D^f taps into config.source here,
            # so the config compared with the folder's config.json is the one training writes there.
            adapter = open_adapter(config, resolve_device(config.device))
            start_run(ctx, folder, config)  # refuses another run's folder before command.txt is touched
            checkpoint = run.final_weights(config.kind)
            if checkpoint.is_file():
                typer.echo(f"already trained by this command: {checkpoint} (nothing to do; use a new --run-dir "
                           "to train another)")  # fmt: skip
                return
            if run.read_log():
                typer.echo(f"{folder}: this command's run stopped before its checkpoint; training it again from "
                           "step 0 (an inverter run keeps no intermediate checkpoint)")  # fmt: skip
            path = train_inverter(config, folder, adapter=adapter)
    except (typer.Exit, SystemExit, KeyboardInterrupt):
        # A foreign GAN's parts (its modules, --features) resolve only once its adapter opens: a folder this command
        # made and that holds no checkpoint yet is removed, so a typo leaves no empty run behind.
        checkpoints = folder / "checkpoints"
        if fresh and folder.is_dir() and not (checkpoints.is_dir() and any(checkpoints.iterdir())):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    typer.echo(f"inverter: {path}")


def _feature_config(network: str, classifier: Path | None, taps: str, pool_size: int) -> Any:
    """--feature-network, --feature-classifier, --taps, --pool-size → the FeatureExtractorConfig. The classifier's
    penultimate features have no taps and nothing to pool: --taps / --pool-size other than their defaults are
    refused with it (command.txt records every option, defaults included, so the defaults stand for "not given")."""
    from training.inversion.networks import FEATURE_NETWORKS, FeatureExtractorConfig

    tap_list = tuple(t.strip() for t in taps.split(",") if t.strip())
    if network not in FEATURE_NETWORKS:
        fail(f"--feature-network must be one of {', '.join(FEATURE_NETWORKS)}; got {network!r}")
    if network == "discriminator":
        if classifier is not None:
            fail("--feature-classifier needs --feature-network classifier (the default network is the discriminator)")
        return FeatureExtractorConfig(tap_list, pool_size)
    if classifier is None:
        fail("--feature-network classifier needs --feature-classifier CKPT (a classifier.safetensors)")
    defaults = FeatureExtractorConfig()
    if tap_list != defaults.taps or pool_size != defaults.pool_size:
        fail(f"--taps / --pool-size choose discriminator feature maps (got --taps {taps} --pool-size {pool_size}); "
             "with --feature-network classifier CN's input is the classifier's penultimate features, which have no "
             "taps and nothing to pool: leave both out")  # fmt: skip
    return FeatureExtractorConfig.of_classifier(classifier)


def _check_recorded_files(run: Any, config: Any) -> None:
    """A run folder that recorded the sha256 of the user's files (or of its feature classifier) refuses files that
    changed since, by name (the generic config comparison would only say "differs in source / features")."""
    from training.core.config import config_from_dict
    from training.inversion.dfi import InverterConfig

    if (config.source is None and config.features.classifier is None) or not run.config_path.is_file():
        return
    try:
        old = config_from_dict(run.read_config(), expected=InverterConfig)
    except (ValueError, TypeError):
        return  # another kind of run, or unreadable: check_config refuses it with its own message
    then, now = old.features.classifier, config.features.classifier
    if then is not None and now is not None and then.checkpoint == now.checkpoint and then.sha256 != now.sha256:
        raise ValueError(f"{run.path} was trained on other bytes of the feature classifier {now.checkpoint} (sha256 "
                         f"{(then.sha256 or '?')[:12]}… then, {(now.sha256 or '?')[:12]}… now). Restore it to "
                         "resume, or train on the new file in a new --run-dir")  # fmt: skip
    if old.source is None or config.source is None:
        return
    changed = old.source.changed_files(config.source)
    if changed:
        raise ValueError(f"{run.path} was trained on other bytes of your files: " + "; ".join(changed)
                         + ". Restore them to resume, or train on the new files in a new --run-dir")  # fmt: skip


def _value_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        low, high = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"--value-range takes LOW,HIGH (two numbers, e.g. -1,1 or 0,1), got {text!r}") from None
    return low, high


def _summary_line(name: str, scores: dict[str, Any]) -> str:
    """One line of reconstruction.json's flat scores (psnr_mean, psnr_std, ...; points: mse only)."""
    if "psnr_mean" not in scores:
        return f"{name}: MSE {scores['mse_mean']:.4f} ± {scores['mse_std']:.4f}"
    return (f"{name}: PSNR {scores['psnr_mean']:.2f} ± {scores['psnr_std']:.2f} dB, "
            f"SSIM {scores['ssim_mean']:.4f} ± {scores['ssim_std']:.4f}")  # fmt: skip


def _save_picture(model: Any, G: Any, data: Any, path: Path, steps: int, method: str, lr: float | None,
                  bound: float | None) -> None:  # fmt: skip
    """Images: the first 16 test images as input | G(ẑ) | G(ẑ_opt); points: reconstructions over the test set."""
    import torch

    from dfi_core.refinement import refine
    from training.core.plotting import save_points
    from training.inversion.dfi import SAMPLE_IMAGES, save_comparison

    count = min(SAMPLE_IMAGES if data.is_image else 2_000, len(data))
    x = data.batch(torch.arange(count), next(G.parameters()).device)
    with torch.no_grad():
        z_hat = model(x)
        versions = [x, G(z_hat)]
    if steps:  # Adam refines each image alone, so these are the very images the scores measured
        z_opt, _ = refine(G, x, z_hat, steps=steps, method=method, lr=lr, bound=bound)
        with torch.no_grad():
            versions.append(G(z_opt))
    if data.is_image:
        save_comparison(versions, path)
    else:
        save_points(versions[-1], path, reference=x.cpu().numpy())


def reconstruct_command(
    ctx: typer.Context,
    inverter: Annotated[Path, typer.Option(help="inverter checkpoint (inverter.safetensors)")],
    n: Annotated[int, typer.Option(help="first n test images; also n fresh pairs for the latent error")] = 1_000,
    refine_steps: Annotated[int, typer.Option(help="eq. 2 iterations from ẑ (the 'opt' variants); 0 = none")] = 0,
    refine_method: Annotated[str, typer.Option(help="adam | lbfgs")] = "adam",
    refine_lr: Annotated[float | None, typer.Option(help="default: 0.05 for adam, 1 for lbfgs")] = None,
    bound: Annotated[float | None, typer.Option(help="keep refined z inside (−bound, bound) via tanh")] = None,
    gan: Annotated[Path | None, typer.Option(help="GAN checkpoint (default: the one the inverter names)")] = None,
    batch: int = 250,
    seed: Annotated[int, typer.Option(help="seed of the generated pairs of the latent error")] = 0,
    out: Annotated[Path | None, typer.Option(help="JSON result (default: reconstruction.json by the inverter)")] = None,
    grid: Annotated[Path | None, typer.Option(help="picture (default: reconstruction.png by the inverter)")] = None,
    device: str = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """PSNR/SSIM of G(ẑ) against unseen test images (mean ± std over images), and after refinement."""
    from dfi_core.refinement import METHODS
    from training.core.torch_utils import resolve_device
    from training.evaluation.reconstruction import evaluate_reconstruction
    from training.evaluation.scoring import flatten
    from training.inversion.dfi import load_gan_split, load_inverter, read_gan_config

    set_threads(threads)
    if refine_method not in METHODS:
        fail(f"--refine-method must be one of {', '.join(METHODS)}; got {refine_method!r}")
    if n < 1 or batch < 1 or refine_steps < 0 or (bound is not None and bound <= 0):
        fail("need --n ≥ 1, --batch ≥ 1, --refine-steps ≥ 0 and --bound > 0")
    dev = resolve_device(device)
    with user_errors():
        model, G, _, config = load_inverter(inverter, dev, gan)
        gan_config = read_gan_config(gan or config.gan_checkpoint)
        data = load_gan_split(gan_config, "test")
        result = evaluate_reconstruction(model, G, data, n, dev, batch=batch, seed=seed, refine_steps=refine_steps,
                                         refine_method=refine_method, refine_lr=refine_lr, bound=bound)  # fmt: skip
    # reconstruction.json keeps its flat schema (psnr_mean, psnr_std, ..., refined.psnr_mean) from the summaries.
    result = {"inverter": str(inverter), "method": config.method, "gan_checkpoint": str(gan or config.gan_checkpoint),
              "data": gan_config.data.name, "split": "test", **flatten(result, mean="{}_mean"),
              "command": command_line(ctx)}  # fmt: skip
    target = out or inverter.parent / "reconstruction.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2))

    picture = grid or inverter.parent / "reconstruction.png"
    _save_picture(model, G, data, picture, refine_steps, refine_method, refine_lr, bound)
    typer.echo(_summary_line(config.method, result))
    if refine_steps:
        typer.echo(_summary_line(f"{config.method}^opt ({refine_method}, {refine_steps} steps)", result["refined"]))
    typer.echo(f"results: {target}, picture: {picture}")
