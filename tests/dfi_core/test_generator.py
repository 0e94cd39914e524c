"""dfi_core.generator: G's shapes and stage table, and that a shipped bundle's weights still fit the architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfi_core.generator import Generator, GeneratorConfig, channels_for, stages_for
from dfi_core.refinement import load_refinement_generator

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize(("size", "expected"), [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (14, (7, 1))])
def test_stages_for_splits_a_side_into_a_base_and_doublings(size: int, expected: tuple[int, int]) -> None:
    base, stages = stages_for(size)
    assert (base, stages) == expected and base * 2**stages == size


@pytest.mark.parametrize("size", [30, 7, 4, 48])
def test_stages_for_refuses_sizes_without_a_stride_2_ladder(size: int) -> None:
    with pytest.raises(ValueError, match=f"image size {size}"):
        stages_for(size)


def test_channels_halve_from_the_base_resolution_up_to_width() -> None:
    assert channels_for(8, 3) == [32, 16, 8]
    assert channels_for(64, 1) == [64]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (2,)])
def test_generator_maps_z_to_the_configured_shape_in_range(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(shape=shape, z_dim=16, width=8)).eval()
    z = torch.randn(5, 16)
    with torch.no_grad():
        out = G(z)
    assert out.shape == (5, *shape) and out.dtype == torch.float32
    if len(shape) == 3:
        assert out.abs().max() <= 1  # tanh: the model range [-1, +1]
        base, stages = stages_for(shape[1])
        assert G.project[0].out_features == channels_for(8, stages)[0] * base**2  # the base map's channels × area


@pytest.mark.parametrize("name", sorted(p.parent.name for p in MODELS.glob("*/generator.safetensors")))
def test_shipped_generator_weights_load_into_the_architecture(name: str) -> None:
    """load_state_dict is strict: a renamed or reshaped layer in dfi_core.generator would fail here."""
    G = load_refinement_generator(MODELS / name / "generator.safetensors")
    assert isinstance(G, Generator) and not G.training
    with torch.no_grad():
        out = G(torch.randn(3, G.cfg.z_dim, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (3, *G.cfg.shape) and out.abs().max() <= 1
