"""Tiny GANs that this project's zoo did not write, for the torch-code adapter's tests (issue 17).

Each is 28×28 with one channel, so `--data fashion-mnist` fits, and small enough to run a few DFI steps in well
under a second. Imported by the tests both as a file path (`.../foreign_gans.py:make_mapping_g`, how the CLI
gets a user's file) and as a module (`tests.training.inversion.foreign_gans:make_sigmoid_g`). Every factory
takes no arguments, as the adapter calls them.
"""

from __future__ import annotations

import torch
from torch import nn

MAPPING_Z = 8  # not an attribute of MappingGenerator: the adapter must read it from G's first Linear
SIGMOID_Z = 6


class MappingGenerator(nn.Module):
    """z → a mapping MLP (StyleGAN-like) → a 7×7 map → two transposed convolutions → Tanh; no latent-size attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.mapping = nn.Sequential(nn.Linear(MAPPING_Z, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.LeakyReLU(0.2))
        self.to_map = nn.Linear(16, 8 * 7 * 7)
        self.synthesis = nn.Sequential(
            nn.ConvTranspose2d(8, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.to_map(self.mapping(z)).view(-1, 8, 7, 7))


class SigmoidGenerator(nn.Module):
    """DCGAN-style: z as a [N, |z|, 1, 1] map into transposed convolutions; output in [0, 1] (a final Sigmoid)."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim = SIGMOID_Z
        self.net = nn.Sequential(
            nn.ConvTranspose2d(SIGMOID_Z, 8, 7, 1, 0), nn.ReLU(),  # 1×1 → 7×7
            nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.ReLU(),  # → 14×14
            nn.ConvTranspose2d(4, 1, 4, 2, 1), nn.Sigmoid(),  # → 28×28
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class FunctionalTanhGenerator(nn.Module):
    """Ends in torch.tanh (no module to read the range from): the adapter measures it."""

    def __init__(self) -> None:
        super().__init__()
        self.nz = 4
        self.fc = nn.Linear(4, 28 * 28)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, 1, 28, 28)


class SumPoolDiscriminator(nn.Module):
    """D^f comes from a functional op: global sum pooling (`h.sum((2, 3))`, no module) before the last Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1),
                                  nn.LeakyReLU(0.2))  # fmt: skip
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).sum(dim=(2, 3)))


class TwoHeadDiscriminator(nn.Module):
    """AC-GAN-like: returns (real/fake logit, class logits) from a shared trunk."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        self.trunk = nn.Linear(4 * 14 * 14, 32)
        self.adversarial = nn.Linear(32, 1)
        self.classes = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.trunk(self.conv(x)))
        return self.adversarial(h), self.classes(h)


class FlatGenerator(nn.Module):
    """Returns flat vectors [N, 784], not an image batch."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim = 4
        self.fc = nn.Linear(4, 28 * 28)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z))


class UnboundedGenerator(nn.Module):
    """A linear output: its range is neither [0, 1] nor [-1, 1], so it must be given (--value-range)."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim = 4
        self.fc = nn.Linear(4, 28 * 28)
        nn.init.constant_(self.fc.bias, 3.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z).view(-1, 1, 28, 28)


class Generator32(nn.Module):
    """1×32×32 images: contradicts Fashion-MNIST's 28×28."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim = 4
        self.fc = nn.Linear(4, 32 * 32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, 1, 32, 32)


class NoLatentHint(nn.Module):
    """Nothing tells its latent size: no attribute, no Linear or transposed convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z * self.scale).view(-1, 1, 28, 28)


def make_mapping_g() -> nn.Module:
    return MappingGenerator()


def make_sigmoid_g() -> nn.Module:
    return SigmoidGenerator()


def make_functional_tanh_g() -> nn.Module:
    return FunctionalTanhGenerator()


def make_sum_pool_d() -> nn.Module:
    return SumPoolDiscriminator()


def make_two_head_d() -> nn.Module:
    return TwoHeadDiscriminator()


def make_flat_g() -> nn.Module:
    return FlatGenerator()


def make_unbounded_g() -> nn.Module:
    return UnboundedGenerator()


def make_g_32() -> nn.Module:
    return Generator32()


def make_no_latent_hint_g() -> nn.Module:
    return NoLatentHint()


def make_not_a_module() -> dict[str, int]:
    return {"layers": 3}
