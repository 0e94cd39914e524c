"""Latent refinement (IJCV eq. 2): both optimisers lower ‖G(z) − x‖², the tanh bound holds, and Adam refines each
sample of a batch exactly as if it were alone. G is a tiny untrained DCGAN generator in eval mode (milliseconds)."""

from __future__ import annotations

import pytest
import torch

from dfi_core.refinement import per_sample_loss, refine
from training.core.torch_utils import frozen
from training.gan.networks import Generator, GeneratorConfig

Z = 8


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(GeneratorConfig(shape=(1, 28, 28), z_dim=Z, width=8))


@pytest.fixture(scope="module")
def G() -> Generator:
    return frozen(tiny_generator())  # type: ignore[return-value]


def targets(G: Generator, n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """x = G(z*) for known z*: a reachable target, so the loss can fall far."""
    with torch.no_grad():
        return G(scale * torch.randn(n, Z, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize(("method", "steps"), [("adam", 50), ("lbfgs", 10)])
def test_refinement_lowers_the_reconstruction_error(G: Generator, method: str, steps: int) -> None:
    x = targets(G, 8, seed=1)
    with torch.no_grad():  # refine must work inside evaluation code's no_grad
        z, history = refine(G, x, None, steps=steps, method=method, generator=torch.Generator().manual_seed(2), z_dim=Z)
    assert z.shape == (8, Z) and len(history) == steps + 1
    assert history[-1] == pytest.approx(per_sample_loss(G, z, x).mean().item(), rel=1e-5)
    assert history[-1] < 0.5 * history[0], f"{method}: {history[0]:.4f} → {history[-1]:.4f}"


def test_random_start_is_seeded(G: Generator) -> None:
    x = targets(G, 4, seed=1)
    a, _ = refine(G, x, None, steps=2, generator=torch.Generator().manual_seed(5), z_dim=Z)
    b, _ = refine(G, x, None, steps=2, generator=torch.Generator().manual_seed(5), z_dim=Z)
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["adam", "lbfgs"])
def test_bound_keeps_every_coordinate_strictly_inside(G: Generator, method: str) -> None:
    """Targets from z* of scale 3 pull z outward; a large Adam rate drives tanh into float32 saturation."""
    bound = 1.0
    x = targets(G, 8, seed=3, scale=3.0)
    z0 = 3.0 * torch.randn(8, Z, generator=torch.Generator().manual_seed(4))  # starts outside: clamped into the box
    seen: list[float] = []
    lr = 2.0 if method == "adam" else None
    z, history = refine(G, x, z0, steps=30, method=method, lr=lr, bound=bound,
                        callback=lambda step, z, loss: seen.append(z.abs().max().item()))  # fmt: skip
    assert len(seen) == 30 and max(seen) < bound and z.abs().max().item() < bound
    assert history[-1] < history[0]


def test_adam_refines_each_sample_as_if_alone(G: Generator) -> None:
    x = targets(G, 6, seed=6)
    z0 = torch.randn(6, Z, generator=torch.Generator().manual_seed(7))
    together, _ = refine(G, x, z0, steps=30)
    for i in range(6):
        alone, _ = refine(G, x[i : i + 1], z0[i : i + 1], steps=30)
        # Eval-mode G has no batch coupling and Adam's update is element-wise, so only float32 summation order
        # differs (a batch of 6 vs 1 takes other conv kernels): ~1e-7, well inside 1e-5 after 30 steps.
        torch.testing.assert_close(together[i : i + 1], alone, rtol=0, atol=1e-5)


def test_refinement_leaves_G_alone_and_rejects_bad_input() -> None:
    G = tiny_generator().eval()  # eval mode but parameters still require grad
    x = targets(G, 2, seed=8)
    refine(G, x, torch.zeros(2, Z), steps=3)
    assert all(p.grad is None for p in G.parameters())  # gradients reach z only
    with pytest.raises(ValueError, match="refinement method"):
        refine(G, x, torch.zeros(2, Z), method="sgd")
    with pytest.raises(ValueError, match="needs z_dim"):
        refine(G, x, None)
    with pytest.raises(ValueError, match="rows"):
        refine(G, x, torch.zeros(3, Z))
    with pytest.raises(ValueError, match="eval mode"):
        refine(G.train(), x, torch.zeros(2, Z))
