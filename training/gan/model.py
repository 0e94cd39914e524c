"""Rebuild a GAN of the zoo from its config alone, and load a checkpoint's frozen G and D (what DFI needs)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from training.core.checkpoint import load_checkpoint, read_metadata
from training.core.config import config_from_dict
from training.core.torch_utils import frozen
from training.gan.config import GANConfig
from training.gan.networks import Autoencoder, Discriminator, FeatureDenoiser, Generator


def build_gan(config: GANConfig) -> dict[str, torch.nn.Module]:
    """G, D and the objective's extra modules, rebuilt from the config alone."""
    modules: dict[str, torch.nn.Module] = {"G": Generator(config.generator)}
    if config.ema_decay > 0:
        # torch's own EMA (swa_utils): a deep copy of G whose weights follow G's by ŵ ← β·ŵ + (1 − β)·w at every
        # update_parameters(G). BatchNorm statistics are not averaged (use_buffers=False): running statistics of
        # other weights do not fit the averaged ones (measured at step 4000 of docs/stronger-gans.md's run: sample FD
        # 95.2 with averaged statistics, 82.5 recomputed), so `refresh_ema_statistics` recomputes them for
        # the averaged weights before every use — BigGAN's "standing statistics", done with swa_utils.update_bn.
        modules["G_ema"] = AveragedModel(
            modules["G"], multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=False
        )
    extra = None
    if config.loss.name == "rfgan":
        modules["autoencoder"] = Autoencoder(config.generator.shape, config.rf_code_dim)
        extra = modules["autoencoder"].encoder
    modules["D"] = Discriminator(config.discriminator, extra_features=extra)
    if config.loss.name == "dfm":
        modules["denoiser"] = FeatureDenoiser(modules["D"].feature_dim)
    return modules


def load_generator_and_discriminator(
    checkpoint: str | Path, device: str = "cpu"
) -> tuple[Generator, Discriminator, GANConfig]:
    """Frozen (eval-mode, no grad) G and D of a GAN checkpoint, for inference and DFI; G is the EMA average of the
    run's generator when it kept one (`ema_decay` > 0)."""
    config = config_from_dict(read_metadata(checkpoint)["config"])
    if not isinstance(config, GANConfig):
        raise ValueError(f"{checkpoint} is a {config.kind} checkpoint, not a GAN")
    modules = build_gan(config)
    load_checkpoint(checkpoint, modules)
    D = frozen(modules["D"].to(device))
    return frozen(shipped_generator(modules).to(device)), D, config  # type: ignore[return-value]


EMA_STATISTICS_BATCHES = 16  # × the run's batch size: 1,024 samples at batch 64 for the EMA G's BatchNorm statistics


@torch.no_grad()
def refresh_ema_statistics(modules: dict[str, torch.nn.Module], z_dim: int, batch_size: int, seed: int,
                           device: torch.device | str = "cpu") -> None:  # fmt: skip
    """Recompute the EMA G's BatchNorm running statistics for its averaged weights (swa_utils.update_bn: reset,
    then a cumulative average over fixed z batches from their own seeded generator, so the training rng is
    untouched and a resumed run recomputes the same values). No-op without an EMA."""
    if "G_ema" not in modules:
        return
    rng = torch.Generator().manual_seed(seed + 3)
    batches = [torch.randn(batch_size, z_dim, generator=rng).to(device) for _ in range(EMA_STATISTICS_BATCHES)]
    G_ema = modules["G_ema"].module
    update_bn(batches, G_ema)
    G_ema.eval()


def shipped_generator(modules: dict[str, torch.nn.Module]) -> Generator:
    """The G that samples, DFI and the bundle use: the EMA average when the run keeps one, else G itself."""
    if "G_ema" in modules:
        return modules["G_ema"].module  # type: ignore[return-value]
    return modules["G"]  # type: ignore[return-value]
