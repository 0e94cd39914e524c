"""The GAN training loop: one function, `train_gan(config, run_dir)`, plus `resume_gan(checkpoint)`.

Every random draw (batch indices, z, WGAN-GP's ε, DFM's corruption) comes from one CPU `torch.Generator`
seeded by the config, whose state is saved in each checkpoint: a resumed run repeats exactly the steps
the uninterrupted run would have taken (on the same device).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from training.core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from training.core.config import config_from_dict, to_dict
from training.core.plotting import save_grid, save_points
from training.core.runs import RunDir
from training.core.torch_utils import frozen, resolve_device
from training.datasets import Dataset, load_dataset
from training.gan.augment import DiffAugment
from training.gan.config import GANConfig
from training.gan.convergence import FDCurve, GeneratorScore
from training.gan.losses import GANObjective
from training.gan.model import build_gan, refresh_ema_statistics, shipped_generator
from training.gan.networks import Autoencoder, Generator


def _save_samples(G: Generator, z: torch.Tensor, path: Path, data: Dataset) -> None:
    was_training = G.training
    G.eval()  # grids show the eval-mode generator, the one DFI and the exported graph use
    with torch.no_grad():
        samples = G(z)
    G.train(was_training)
    if samples.dim() == 4:
        save_grid(samples, path.with_suffix(".png"), nrow=8, scale=2 if samples.shape[-1] <= 32 else 1)
    else:
        save_points(samples, path.with_suffix(".png"), reference=data.data[:5000])


def pretrain_autoencoder(
    autoencoder: Autoencoder, data: Dataset, config: GANConfig, rng: torch.Generator, device: torch.device
) -> float:
    """RFGAN's first stage: fit the autoencoder to real images (MSE), then freeze it."""
    autoencoder.train()
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=1e-3)
    loss = torch.tensor(0.0)
    for _ in tqdm(range(config.rf_pretrain_steps), desc="rfgan autoencoder", leave=False):
        real = data.batch(torch.randint(len(data), (config.batch_size,), generator=rng), device)
        loss = F.mse_loss(autoencoder(real), real)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    frozen(autoencoder)
    return loss.item()


ScoreFactory = Callable[[GANConfig], GeneratorScore]


def train_gan(config: GANConfig, run_dir: Path, resume_from: Path | None = None, quiet: bool = False,
              sample_fd_for: ScoreFactory | None = None) -> Path:  # fmt: skip
    """Train until `config.steps` generator steps; returns the path of the final checkpoint.

    `sample_fd_for` builds the scorer of `config.fd_classifier` (training.evaluation.samples.sample_fd_for; it
    needs the classifier and the FD, which sit above this layer, so the caller passes it in)."""
    config.validate()
    if config.fd_classifier and sample_fd_for is None:
        raise ValueError("fd_classifier is set: pass sample_fd_for=training.evaluation.samples.sample_fd_for")
    run = RunDir(run_dir)
    may_change = ("steps",) if resume_from is not None else ()  # a resume may extend the run, nothing else
    run.check_config(config, may_change)  # before the data loads and RFGAN's autoencoder trains
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # only module initialisation draws from the global RNG
    data = load_dataset(config.data.name, "train", config.data.data_dir, config.data.size, config.data.channels)
    data = data.without_classes(config.data.exclude_classes)
    if tuple(data.shape) != tuple(config.generator.shape):
        raise ValueError(f"data set {data.name} has samples {data.shape}, config says {config.generator.shape}")
    modules = build_gan(config)
    for module in modules.values():
        module.to(device)
    G, D = modules["G"], modules["D"]
    opt = config.optim
    optimizers = {
        "G": torch.optim.Adam(G.parameters(), lr=opt.lr_g, betas=(opt.beta1, opt.beta2)),
        "D": torch.optim.Adam(
            [p for p in D.parameters() if p.requires_grad], lr=opt.lr_d, betas=(opt.beta1, opt.beta2)
        ),
    }
    if "denoiser" in modules:
        optimizers["denoiser"] = torch.optim.Adam(modules["denoiser"].parameters(), lr=opt.lr_d, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(config.seed)
    start, extra = 0, {}
    if resume_from is not None:
        meta = load_checkpoint(resume_from, modules, optimizers, rng)
        start, extra = meta["step"], meta["extra"]
    if "autoencoder" in modules:
        if not extra.get("autoencoder_trained"):
            extra["autoencoder_mse"] = pretrain_autoencoder(modules["autoencoder"], data, config, rng, device)
            extra["autoencoder_trained"] = True
        frozen(modules["autoencoder"])

    run.write_config(config, may_change)
    log = run.log()
    sample_z = torch.randn(64, config.generator.z_dim, generator=torch.Generator().manual_seed(config.seed + 1))
    sample_z = sample_z.to(device)
    augment = DiffAugment(config.augment)
    objective = GANObjective(config.loss, D, modules.get("denoiser"), augment or None)  # type: ignore[arg-type]
    shipped = shipped_generator(modules)  # the EMA average when kept: what samples, DFI and bundles use
    sample_fd, fd_curve = None, FDCurve(run.path)
    if config.fd_classifier:
        assert sample_fd_for is not None
        sample_fd = sample_fd_for(config)
        fd_curve.truncate_after(start)
    fd_every = config.fd_every or config.checkpoint_every

    refreshed_at = [-1]  # the step whose weights the EMA G's BatchNorm statistics were last computed for

    def refresh(step: int) -> None:
        """The EMA G's BatchNorm statistics for its current weights, before any use at `step` — once per step,
        though samples, the FD score and the checkpoint may all fall on it (update_bn resets them first, so a
        second call at the same step would only repeat the same values)."""
        if refreshed_at[0] != step:
            refresh_ema_statistics(modules, config.generator.z_dim, config.batch_size, config.seed, device)
            refreshed_at[0] = step

    def checkpoint(step: int) -> Path:
        refresh(step)
        path = save_checkpoint(run.checkpoint_path(step), modules, optimizers, to_dict(config), step, rng, extra)
        run.prune_checkpoints(config.keep_checkpoints)
        return path

    def score(step: int) -> None:
        assert sample_fd is not None
        refresh(step)
        record = {"step": step, "n": sample_fd.n, "fd": round(sample_fd(shipped), 4)}
        if shipped is not G:
            record["fd_raw"] = round(sample_fd(G), 4)
        record = fd_curve.add(record)
        if not quiet:
            bar.write(f"step {step}: sample FD {record['fd']} (n = {record['n']})" + " — flat" * record["converged"])

    def draw_batch() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(data), (config.batch_size,), generator=rng)
        z = torch.randn(config.batch_size, config.generator.z_dim, generator=rng)
        return data.batch(index, device), z.to(device)

    G.train()
    D.train()
    started, last_path = time.perf_counter(), None
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc=run_dir.name, disable=quiet)
    for step in bar:
        for _ in range(opt.n_critic):
            real, z = draw_batch()
            with torch.no_grad():
                fake = G(z)
            d_loss, stats = objective.discriminator_loss(real, fake, rng)
            optimizers["D"].zero_grad(set_to_none=True)
            d_loss.backward()
            optimizers["D"].step()
            if "denoiser" in modules:
                r_loss = objective.denoiser_loss(real, rng)
                optimizers["denoiser"].zero_grad(set_to_none=True)
                r_loss.backward()
                optimizers["denoiser"].step()
                stats["denoiser"] = r_loss.item()
        z = torch.randn(config.batch_size, config.generator.z_dim, generator=rng).to(device)
        g_loss, g_stats = objective.generator_loss(G(z), rng)
        optimizers["G"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["G"].step()
        if "G_ema" in modules:
            modules["G_ema"].update_parameters(G)  # type: ignore[operator]

        done = step + 1
        if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
            checkpoint(done)
            raise FloatingPointError(f"non-finite loss at step {done}: D {d_loss.item()}, G {g_loss.item()}")
        if done % config.log_every == 0 or done == config.steps:
            record = {"step": done, "loss_D": d_loss.item(), "loss_G": g_loss.item(), **stats, **g_stats}
            record["seconds"] = round(time.perf_counter() - started, 2)
            log.write(record)
            bar.set_postfix(D=f"{record['loss_D']:.3f}", G=f"{record['loss_G']:.3f}")
        if done % config.sample_every == 0 or done == config.steps:
            refresh(done)
            _save_samples(shipped, sample_z, run.samples / f"step-{done:06d}", data)
        if sample_fd is not None and (done % fd_every == 0 or done == config.steps):
            score(done)
        if done % config.checkpoint_every == 0 or done == config.steps:
            last_path = checkpoint(done)
    return last_path or checkpoint(start)


def resume_gan(checkpoint: str | Path, steps: int | None = None, quiet: bool = False,
               sample_fd_for: ScoreFactory | None = None) -> Path:  # fmt: skip
    """Continue a run from one of its checkpoints, in the same run folder; `steps` may extend it."""
    checkpoint = Path(checkpoint)
    config = config_from_dict(read_metadata(checkpoint)["config"])
    if not isinstance(config, GANConfig):
        raise ValueError(f"{checkpoint} is not a GAN checkpoint")
    if steps is not None:
        config.steps = steps
    return train_gan(
        config, RunDir.of_checkpoint(checkpoint).path, resume_from=checkpoint, quiet=quiet, sample_fd_for=sample_fd_for
    )
