"""The six GAN objectives of the zoo (IJCV sec. 4, Table 2).

Each objective gives a discriminator loss on (real, fake) and a generator loss on fake, both as scalars to
minimise, plus a dict of floats for the log. Randomness (WGAN-GP's interpolation, DFM's corruption) is drawn
from the training loop's generator so that a run is reproducible and a resume repeats the same next step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.gan.networks import Discriminator, FeatureDenoiser

LOSSES = ("dcgan", "lsgan", "wgan-gp", "sngan", "dfm", "rfgan")


@dataclass
class LossConfig:
    name: str = "dcgan"
    gp_weight: float = 10.0  # WGAN-GP λ (Gulrajani et al. 2017)
    dfm_weight: float = 0.03  # DFM λ_denoise, with λ_adv = 1 (Warde-Farley & Bengio 2017, sec. 4)
    dfm_noise: float = 1.0  # std of the Gaussian corruption of D features for the denoiser
    # Replace the objective's adversarial terms by the hinge loss (Lim & Ye 2017; SNGAN, BigGAN): D minimises
    # relu(1 − D(x)) + relu(1 + D(G(z))), G minimises −D(G(z)). SNGAN already uses it; WGAN-GP's critic loss is the
    # Wasserstein estimate its penalty is built around, so the option is refused there.
    hinge: bool = False

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.name!r}")
        if self.hinge and self.name == "wgan-gp":
            raise ValueError("the hinge option replaces a GAN's adversarial loss; WGAN-GP's critic loss is not one")


def _uniform(shape: tuple[int, ...], rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=rng).to(like.device, like.dtype)


def _normal(shape: tuple[int, ...], rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=rng).to(like.device, like.dtype)


class GANObjective:
    """`augment` (training.gan.augment.DiffAugment, or None) is applied to every image D sees, real and fake, in D's
    loss and G's; its draws come from the `rng` each call is given."""

    def __init__(
        self,
        cfg: LossConfig,
        D: Discriminator,
        denoiser: FeatureDenoiser | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        self.cfg, self.D, self.denoiser, self.augment = cfg, D, denoiser, augment
        if cfg.name == "dfm" and denoiser is None:
            raise ValueError("the DFM objective needs a FeatureDenoiser")

    def _seen(self, x: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        """What D is shown: x, augmented when a policy is set."""
        if self.augment is None:
            return x
        if rng is None:
            raise ValueError("an augmented objective needs the training loop's rng")
        return self.augment(x, rng)

    # -- discriminator -------------------------------------------------------------------------------
    def discriminator_loss(
        self, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        name = self.cfg.name
        d_real, d_fake = self.D(self._seen(real, rng)), self.D(self._seen(fake, rng))
        stats = {"D(real)": d_real.mean().item(), "D(fake)": d_fake.mean().item()}
        if self.cfg.hinge or name == "sngan":
            loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()  # hinge (Miyato et al. 2018)
        elif name in ("dcgan", "dfm", "rfgan"):
            loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()  # BCE with logits, labels 1 / 0
        elif name == "lsgan":
            loss = 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * (d_fake**2).mean()  # Mao et al., a=0, b=c=1
        else:  # wgan-gp
            gp = self.gradient_penalty(real, fake, rng)
            stats["gp"] = gp.item()
            stats["wdist"] = (d_real.mean() - d_fake.mean()).item()
            loss = d_fake.mean() - d_real.mean() + self.cfg.gp_weight * gp
        return loss, stats

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """(‖∇D(x̂)‖₂ − 1)² on random interpolates x̂ = εx + (1−ε)x̃ (Gulrajani et al. 2017, Alg. 1)."""
        eps = _uniform((real.shape[0],) + (1,) * (real.dim() - 1), rng, real)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(mixed).sum(), mixed, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def denoiser_loss(self, real: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """DFM: train r(·) to undo Gaussian corruption of D's features of real data (D fixed here)."""
        assert self.denoiser is not None
        with torch.no_grad():
            h = self.D.features(real, ("last",))["last"]
        noisy = h + self.cfg.dfm_noise * _normal(tuple(h.shape), rng, h)
        return F.mse_loss(self.denoiser(noisy), h)

    # -- generator -----------------------------------------------------------------------------------
    def generator_loss(
        self, fake: torch.Tensor, rng: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        name = self.cfg.name
        fake = self._seen(fake, rng)
        if name == "dfm":
            h = self.D.features(fake, ("last",))["last"]
            d_fake = self.D.logit(h).squeeze(1)
            adv = -d_fake.mean() if self.cfg.hinge else F.softplus(-d_fake).mean()
            # Move G's features toward where the denoiser (a model of real features) sends them; the target
            # is a constant for G (Warde-Farley & Bengio, eq. 4).
            target = self.denoiser(h).detach()  # type: ignore[misc]
            denoise = ((h - target) ** 2).sum(1).mean()
            return adv + self.cfg.dfm_weight * denoise, {"adv": adv.item(), "denoise": denoise.item()}
        d_fake = self.D(fake)
        if self.cfg.hinge:
            loss = -d_fake.mean()
        elif name in ("dcgan", "rfgan"):
            loss = F.softplus(-d_fake).mean()  # non-saturating: −log D(G(z))
        elif name == "lsgan":
            loss = 0.5 * ((d_fake - 1) ** 2).mean()
        else:  # sngan (hinge), wgan-gp
            loss = -d_fake.mean()
        return loss, {}


def default_norm(loss: str) -> str:
    """Discriminator normalisation each objective was published with."""
    return {"wgan-gp": "layer", "sngan": "spectral"}.get(loss, "batch")
