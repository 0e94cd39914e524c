"""An external library's GAN, as a user brings it: torch-mimicry 0.1.16's SNGAN for 32×32 images (Lee & Town 2020;
`pip install --no-deps torch-mimicry==0.1.16`), used as a dependency — nothing of it is copied here.

The factories below are what `python -m training train inverter --generator scripts/byo_gan/mimicry_sngan.py:make_g
--discriminator scripts/byo_gan/mimicry_sngan.py:make_d` calls. Mimicry's 32×32 nets are fixed at 3 channels, so
they are fitted to Fashion-MNIST's 1×28×28 the way its training script fed them (train_mimicry_sngan.py):
D sees the 28×28 image padded by 2 with the background value −1 and its grey channel repeated three times; G's
32×32 RGB output is cropped back to the centre 28×28 and its channels averaged. The GAN itself — architecture,
spectral norm, losses, training loop — is the library's.

Importing `torch_mimicry` runs its `__init__`, which imports TensorFlow metrics and torchvision data sets that
these machines do not have (and the nets do not need); `_mimicry_nets` registers the package without running that
`__init__` and imports only `torch_mimicry.nets.sngan.sngan_32`, which needs torch alone.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import torch
from torch import nn

NZ, NGF, NDF = 128, 32, 32  # the run's sizes (the library's defaults, 256/128, are too slow for this CPU)


def _mimicry_nets() -> Any:
    if "torch_mimicry" not in sys.modules:
        spec = importlib.util.find_spec("torch_mimicry")
        if spec is None:
            raise ImportError("torch-mimicry is not installed: pip install --no-deps torch-mimicry==0.1.16")
        package = types.ModuleType("torch_mimicry")
        package.__path__ = list(spec.submodule_search_locations or [])
        package.__spec__ = spec
        sys.modules["torch_mimicry"] = package
    from torch_mimicry.nets.sngan import sngan_32

    return sngan_32


class FashionGenerator(nn.Module):
    """z [N, 128] ~ N(0, I) → mimicry G → [N, 3, 32, 32] in [−1, 1] (tanh) → centre 28×28, channel mean →
    [N, 1, 28, 28] in [−1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _mimicry_nets().SNGANGenerator32(nz=NZ, ngf=NGF, bottom_width=4)
        self.nz = NZ

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)[:, :, 2:30, 2:30].mean(1, keepdim=True)


class FashionDiscriminator(nn.Module):
    """[N, 1, 28, 28] in [−1, 1] → padded by 2 with −1, grey repeated to RGB → mimicry D → logit [N, 1].
    Its feature vector is the input of its last Linear (`net.l5`, after ReLU and global sum pooling)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _mimicry_nets().SNGANDiscriminator32(ndf=NDF)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
        return self.net(x.expand(-1, 3, -1, -1))


def make_g() -> nn.Module:
    return FashionGenerator()


def make_d() -> nn.Module:
    return FashionDiscriminator()
