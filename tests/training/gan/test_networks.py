"""Architectures: shapes per resolution, named discriminator taps, RFGAN's frozen encoder."""

from __future__ import annotations

import pytest
import torch

from training.classifiers.networks import Classifier, ClassifierConfig
from training.gan.networks import (
    Autoencoder,
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    stages_for,
)

EXPECTED_TAPS = {
    (1, 28, 28): {"actv14-0": (8, 14, 14), "actv7-0": (16, 7, 7), "last": (32,)},
    (3, 32, 32): {"actv16-0": (8, 16, 16), "actv8-0": (16, 8, 8), "actv4-0": (32, 4, 4), "last": (32,)},
    (3, 64, 64): {"actv32-0": (8, 32, 32), "actv16-0": (16, 16, 16), "actv8-0": (32, 8, 8),
                  "actv4-0": (64, 4, 4), "last": (32,)},
}  # fmt: skip


@pytest.mark.parametrize("shape", list(EXPECTED_TAPS))
@pytest.mark.parametrize("norm", ["batch", "layer", "spectral", "none"])
def test_generator_and_discriminator_shapes(shape: tuple[int, ...], norm: str) -> None:
    G = Generator(GeneratorConfig(shape=shape, z_dim=16, width=8))
    D = Discriminator(DiscriminatorConfig(shape=shape, width=8, norm=norm, feature_dim=32))
    x = G(torch.randn(3, 16))
    assert x.shape == (3, *shape) and x.min() >= -1 and x.max() <= 1  # tanh output range
    assert D(x).shape == (3,)
    taps = D.features(x, D.feature_names)
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == EXPECTED_TAPS[shape]


def test_unknown_tap_lists_the_available_ones() -> None:
    D = Discriminator(DiscriminatorConfig(shape=(1, 28, 28), width=8, feature_dim=32))
    with pytest.raises(KeyError, match="actv14-0"):
        D.features(torch.zeros(1, 1, 28, 28), ["actv64-1"])


def test_flattened_last_layer_when_feature_dim_is_zero() -> None:
    D = Discriminator(DiscriminatorConfig(shape=(1, 28, 28), width=8, feature_dim=0))
    assert D.features(torch.zeros(2, 1, 28, 28))["last"].shape == (2, 16 * 7 * 7)


def test_rfgan_encoder_is_concatenated_and_stays_frozen() -> None:
    ae = Autoencoder((1, 28, 28), code_dim=10, width=8)
    D = Discriminator(DiscriminatorConfig(shape=(1, 28, 28), width=8, feature_dim=32, extra_feature_dim=10),
                      extra_features=ae.encoder)  # fmt: skip
    D.train()
    assert not ae.encoder.training  # its batch norm must not track fake images
    assert all(not p.requires_grad for p in ae.encoder.parameters())
    x = torch.randn(4, 1, 28, 28)
    last = D.features(x)["last"]
    assert last.shape == (4, 42)
    torch.testing.assert_close(last[:, 32:], ae.encoder(x))


def test_points_and_classifier() -> None:
    G = Generator(GeneratorConfig(shape=(2,), z_dim=2, width=16))
    D = Discriminator(DiscriminatorConfig(shape=(2,), width=16, feature_dim=0))
    assert D(G(torch.randn(5, 2))).shape == (5,) and D.feature_names == ["fc-0", "last"]
    C = Classifier(ClassifierConfig(shape=(3, 64, 64), num_classes=7, width=8, feature_dim=12)).eval()
    x = torch.randn(2, 3, 64, 64)
    assert C(x).shape == (2, 7) and C.features(x).shape == (2, 12)


def test_unsupported_size_is_named() -> None:
    with pytest.raises(ValueError, match="image size 30"):
        stages_for(30)
