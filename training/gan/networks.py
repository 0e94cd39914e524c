"""DCGAN-style networks of the zoo (IJCV sec. 4: "baseline GAN architectures based on DCGAN for low resolution").

Shapes (one convention for all modules):
    z        [N, z_dim] float32, prior N(0, I)
    image    [N, C, H, W] float32, [-1, +1], H = W in {28, 32, 64}
    point    [N, D] float32 (the 2-D Gaussians experiment)

Image sizes map to a base resolution and a number of stride-2 stages: 28 = 7·2², 32 = 4·2³, 64 = 4·2⁴.
The discriminator exposes every stage as a named feature map, following IJCV Table 6's naming
(`actv{resolution}-{index}`); `last` is the feature vector before the final FC → 1, the paper's D^f.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from dfi_core.generator import Generator, GeneratorConfig, channels_for, stages_for

NORMS = ("batch", "layer", "spectral", "none")


@dataclass
class DiscriminatorConfig:
    shape: tuple[int, ...]
    width: int = 64  # channels after the first conv (DCGAN's ndf); MLP hidden units for points
    norm: str = "batch"  # batch (DCGAN, LSGAN), layer (WGAN-GP: no batch coupling), spectral (SNGAN), none
    feature_dim: int = 1024  # size of the FC feature layer `last` (D^f); 0 → flattened last conv map
    extra_feature_dim: int = 0  # RFGAN: size of the frozen encoder's features concatenated into `last`

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"discriminator norm must be one of {NORMS}, got {self.norm!r}")


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # LayerNorm over (C, H, W): WGAN-GP's recommended critic norm
    return nn.Identity()


class Discriminator(nn.Module):
    """D with named taps. `forward(x)` → logits [N]; `features(x, names)` → {name: tensor}.

    RFGAN: pass `extra_features(x)` (a frozen encoder) so that `last` = concat(D's FC features, encoder(x)).
    """

    def __init__(self, cfg: DiscriminatorConfig, extra_features: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        sn = spectral_norm if cfg.norm == "spectral" else (lambda m: m)
        self.blocks = nn.ModuleDict()
        if len(cfg.shape) == 1:
            h = cfg.width
            self.blocks["fc-0"] = nn.Sequential(sn(nn.Linear(cfg.shape[0], h)), nn.LeakyReLU(0.2))
            self.blocks["last"] = nn.Sequential(sn(nn.Linear(h, h)), nn.LeakyReLU(0.2))
            last_dim = h
        else:
            c, size, _ = cfg.shape
            base, stages = stages_for(size)
            chans = list(reversed(channels_for(cfg.width, stages)))  # width, 2·width, ...
            in_ch, res = c, size
            for i, out_ch in enumerate(chans):
                res //= 2
                norm = nn.Identity() if i == 0 else _norm2d(cfg.norm, out_ch)  # DCGAN: no norm on layer 1
                self.blocks[f"actv{res}-0"] = nn.Sequential(
                    sn(nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=cfg.norm != "batch" or i == 0)),
                    norm,
                    nn.LeakyReLU(0.2),
                )
                in_ch = out_ch
            flat = in_ch * base * base
            if cfg.feature_dim:
                self.blocks["last"] = nn.Sequential(
                    nn.Flatten(), sn(nn.Linear(flat, cfg.feature_dim)), nn.LeakyReLU(0.2)
                )
                last_dim = cfg.feature_dim
            else:
                self.blocks["last"] = nn.Flatten()
                last_dim = flat
        self.extra_features = extra_features
        if extra_features is not None:
            if not cfg.extra_feature_dim:
                raise ValueError("extra_features given but extra_feature_dim is 0")
            extra_features.requires_grad_(False)
        self.feature_dim = last_dim + cfg.extra_feature_dim
        self.logit = sn(nn.Linear(self.feature_dim, 1))

    def train(self, mode: bool = True) -> Discriminator:
        super().train(mode)
        if self.extra_features is not None:
            self.extra_features.eval()  # RFGAN's encoder is frozen: its batch-norm statistics must not move
        return self

    @property
    def feature_names(self) -> list[str]:
        return list(self.blocks.keys())

    def features(self, x: torch.Tensor, names: list[str] | tuple[str, ...] = ("last",)) -> dict[str, torch.Tensor]:
        unknown = set(names) - set(self.blocks.keys())
        if unknown:
            raise KeyError(f"unknown discriminator feature(s) {sorted(unknown)}; available: {self.feature_names}")
        out: dict[str, torch.Tensor] = {}
        h = x
        for name, block in self.blocks.items():
            h = block(h)
            if name == "last" and self.extra_features is not None:
                h = torch.cat([h, self.extra_features(x).flatten(1)], dim=1)
            if name in names:
                out[name] = h
            if len(out) == len(names):
                break
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.features(x, ("last",))["last"]).squeeze(1)


class ConvEncoder(nn.Module):
    """Image → vector: the conv stack of D (batch norm) + FC. Used as RFGAN's autoencoder encoder,
    as the classifier trunk, and later as the ENC baselines."""

    def __init__(self, shape: tuple[int, ...], out_dim: int, width: int = 32, hidden: int = 0) -> None:
        super().__init__()
        c, size, _ = shape
        base, stages = stages_for(size)
        chans = list(reversed(channels_for(width, stages)))
        layers: list[nn.Module] = []
        in_ch = c
        for i, out_ch in enumerate(chans):
            layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), nn.BatchNorm2d(out_ch) if i else nn.Identity()]
            layers.append(nn.LeakyReLU(0.2))
            in_ch = out_ch
        layers.append(nn.Flatten())
        flat = in_ch * base * base
        if hidden:
            layers += [nn.Linear(flat, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)]
            flat = hidden
        layers.append(nn.Linear(flat, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Autoencoder(nn.Module):
    """RFGAN's autoencoder (Bang & Shim 2018): trained on real images, its encoder gives the
    "representative features" that are concatenated into D's last layer."""

    def __init__(self, shape: tuple[int, ...], code_dim: int = 128, width: int = 32) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.encoder = ConvEncoder(shape, code_dim, width)
        self.decoder = Generator(GeneratorConfig(shape=shape, z_dim=code_dim, width=width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class FeatureDenoiser(nn.Module):
    """DFM's denoising autoencoder r(·) on D's `last` features (Warde-Farley & Bengio 2017)."""

    def __init__(self, feature_dim: int, hidden: int = 1024) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, feature_dim),
        )  # fmt: skip

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)
