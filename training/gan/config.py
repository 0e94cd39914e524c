"""The GAN run config (registered kind `gan`; rebuilt by `training.core.config.config_from_dict`) and
`gan_config`, which fills in each objective's published optimiser defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.core.config import register_config
from training.datasets.config import DataConfig
from training.gan.augment import parse_policy
from training.gan.losses import LossConfig, default_norm
from training.gan.networks import DiscriminatorConfig, GeneratorConfig, stages_for

# Adam settings each objective was published with: (lr_g, lr_d, beta1, beta2, n_critic).
OPTIMIZER_DEFAULTS = {
    "dcgan": (2e-4, 2e-4, 0.5, 0.999, 1),  # Radford et al. 2016
    "lsgan": (2e-4, 2e-4, 0.5, 0.999, 1),  # Mao et al. 2017 (DCGAN settings)
    "dfm": (2e-4, 2e-4, 0.5, 0.999, 1),
    "rfgan": (2e-4, 2e-4, 0.5, 0.999, 1),
    "sngan": (2e-4, 2e-4, 0.5, 0.999, 1),  # Miyato et al. 2018, n_dis = 1 setting
    "wgan-gp": (1e-4, 1e-4, 0.0, 0.9, 5),  # Gulrajani et al. 2017, Alg. 1
}


@dataclass
class OptimConfig:
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 1  # discriminator steps per generator step


@register_config
@dataclass
class GANConfig:
    data: DataConfig
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    loss: LossConfig
    optim: OptimConfig
    steps: int = 10_000  # generator steps
    batch_size: int = 64
    seed: int = 0
    rf_pretrain_steps: int = 2_000  # RFGAN: autoencoder steps on real data before the GAN starts
    rf_code_dim: int = 128
    sample_every: int = 1_000
    checkpoint_every: int = 1_000
    log_every: int = 50
    keep_checkpoints: int = 2
    # Exponential moving average of G's weights (and BatchNorm statistics), ŵ ← β·ŵ + (1 − β)·w after every G step
    # (Karras et al. 2018; Yazıcı et al. 2019): the averaged G is the one sampled, inverted and exported. 0 = off.
    ema_decay: float = 0.0
    # DiffAugment policy for D's inputs, e.g. "color,translation,cutout" (training/gan/augment.py); "" = none.
    augment: str = ""
    # Sample FD along training (training/gan/convergence.py): the data set's classifier checkpoint, scored at
    # every `fd_every` steps (0 = at every checkpoint) on `fd_samples` fixed z; None = not scored.
    fd_classifier: str | None = None
    fd_every: int = 0
    fd_samples: int = 2_000
    device: str = "auto"
    kind: str = field(default="gan", init=False)

    def validate(self) -> None:
        """Cross-field checks, raised before any work starts."""
        problems = []
        if self.steps < 1 or self.batch_size < 1 or self.optim.n_critic < 1:
            problems.append("steps, batch size and n_critic must be ≥ 1")
        shape = self.generator.shape
        if tuple(shape) != tuple(self.discriminator.shape):
            problems.append(f"generator shape {shape} ≠ discriminator shape {self.discriminator.shape}")
        if len(shape) == 3:
            stages_for(shape[1])
        elif self.loss.name == "rfgan":
            problems.append("rfgan needs images (its representative features come from a conv autoencoder)")
        if self.loss.name == "sngan" and self.discriminator.norm != "spectral":
            problems.append("sngan means a spectrally normalised discriminator: use norm 'spectral'")
        if self.loss.name == "wgan-gp" and self.discriminator.norm == "batch":
            problems.append("wgan-gp's gradient penalty is per sample: batch norm in the critic is invalid")
        if self.loss.name == "rfgan" and self.discriminator.extra_feature_dim != self.rf_code_dim:
            problems.append("rfgan: discriminator.extra_feature_dim must equal rf_code_dim")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        try:
            ops = parse_policy(self.augment)
        except ValueError as error:
            problems.append(str(error))
        else:
            if ops and len(shape) != 3:
                problems.append("augment moves pixels: it needs an image data set")
        if self.fd_every < 0 or self.fd_samples < 2:
            problems.append("fd_every must be ≥ 0 and fd_samples ≥ 2")
        if self.fd_every and not self.fd_classifier:
            problems.append("fd_every needs fd_classifier (the data set's classifier checkpoint)")
        if problems:
            raise ValueError("invalid GAN config: " + "; ".join(problems))


def gan_config(
    data: DataConfig,
    shape: tuple[int, ...],
    loss: str,
    z_dim: int = 64,
    g_width: int = 64,
    d_width: int = 64,
    feature_dim: int = 1024,
    norm: str | None = None,
    hinge: bool = False,
    **overrides: Any,
) -> GANConfig:
    """A GAN config with the published defaults of `loss` filled in; `overrides` replace top-level fields
    and optimiser fields (lr_g, lr_d, beta1, beta2, n_critic) given as non-None."""
    lr_g, lr_d, beta1, beta2, n_critic = OPTIMIZER_DEFAULTS[loss]
    optim = OptimConfig(lr_g, lr_d, beta1, beta2, n_critic)
    for key in ("lr_g", "lr_d", "beta1", "beta2", "n_critic"):
        value = overrides.pop(key, None)
        if value is not None:
            setattr(optim, key, value)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if len(shape) == 1:  # points: small MLPs, no FC feature block beyond the two hidden layers
        g_width, d_width, feature_dim = 128, 128, 0
    rf_code_dim = overrides.get("rf_code_dim", 128)
    config = GANConfig(
        data=data,
        generator=GeneratorConfig(shape=tuple(shape), z_dim=z_dim, width=g_width),
        discriminator=DiscriminatorConfig(
            shape=tuple(shape),
            width=d_width,
            norm=norm or default_norm(loss),
            feature_dim=feature_dim,
            extra_feature_dim=rf_code_dim if loss == "rfgan" else 0,
        ),
        loss=LossConfig(name=loss, hinge=hinge),
        optim=optim,
        **overrides,
    )
    config.validate()
    return config
