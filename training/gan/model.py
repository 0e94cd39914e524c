"""Rebuild a GAN of the zoo from its config alone, and load a checkpoint's frozen G and D (what DFI needs)."""

from __future__ import annotations

from pathlib import Path

import torch

from training.core.checkpoint import load_checkpoint, read_metadata
from training.core.config import config_from_dict
from training.core.torch_utils import frozen
from training.gan.config import GANConfig
from training.gan.networks import Autoencoder, Discriminator, FeatureDenoiser, Generator


def build_gan(config: GANConfig) -> dict[str, torch.nn.Module]:
    """G, D and the objective's extra modules, rebuilt from the config alone."""
    modules: dict[str, torch.nn.Module] = {"G": Generator(config.generator)}
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
    """Frozen (eval-mode, no grad) G and D of a GAN checkpoint, for inference and DFI."""
    config = config_from_dict(read_metadata(checkpoint)["config"])
    if not isinstance(config, GANConfig):
        raise ValueError(f"{checkpoint} is a {config.kind} checkpoint, not a GAN")
    modules = build_gan(config)
    load_checkpoint(checkpoint, modules)
    G, D = (frozen(modules[k].to(device)) for k in ("G", "D"))
    return G, D, config  # type: ignore[return-value]
