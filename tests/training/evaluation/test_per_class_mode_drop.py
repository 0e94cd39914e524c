"""A GAN genuinely trained without one class is flagged on that class (issue 23's fast test).

Eight equal 2-D Gaussian modes on a circle (training/datasets/gaussians.py's centres and std, but equal weights,
so no mode is a minor one by design); one mode is removed from the GAN's training data. The zoo's own point
networks (build_gan, GANObjective: DCGAN loss) train for 600 steps and DFI's connection network (eq. 5, latent
loss on generated pairs only) for 300; then unseen test points of every mode are reconstructed, G(CN(D^f(x))),
and the per-class report of dfi_core.per_class scores each mode's MSE with the same flag rule as the CLI and the
metric jobs. Widths are shrunk (64) to fit the default suite: ~5 s on one thread.

What it can show honestly: the dropped mode is flagged and is by far the worst class. Other modes may be flagged
too (a tiny G for 600 steps reconstructs some modes a little worse than the rest, and on near-perfect modes the
MAD is tiny), so the test does not claim zero false alarms; it asserts the dropped mode's z is at least twice as
extreme as any other mode's (measured for dropped modes 1, 4, 6 at 2e-3: the margin was ≥ 3.4×).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfi_core.per_class import per_class_report
from training.datasets.config import DataConfig
from training.datasets.gaussians import N_MODES, STD, mode_centres
from training.gan.config import gan_config
from training.gan.losses import GANObjective
from training.gan.model import build_gan
from training.inversion.networks import (
    ConnectionNetwork,
    ConnectionNetworkConfig,
    DiscriminatorFeatures,
    FeatureExtractorConfig,
)


def _points(rng: np.random.Generator, n: int, drop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, N_MODES, n)
    if drop is not None:
        labels = labels[labels != drop]
    points = mode_centres()[labels] + rng.normal(0.0, STD, (len(labels), 2))
    return points.astype(np.float32), labels


def _train_without(drop: int, seed: int = 0, gan_steps: int = 600, cn_steps: int = 300, batch: int = 256):  # noqa: ANN202
    torch.manual_seed(seed)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    data = torch.from_numpy(_points(rng, 20_000, drop)[0])
    cfg = gan_config(DataConfig(name="gaussians"), (2,), "dcgan", z_dim=2, lr_g=2e-3, lr_d=2e-3)
    cfg.generator.width = cfg.discriminator.width = 64
    modules = build_gan(cfg)
    G, D = modules["G"], modules["D"]
    objective = GANObjective(cfg.loss, D)
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), 2e-3, betas=betas) for m in (G, D))
    for _ in range(gan_steps):
        real = data[torch.randint(len(data), (batch,), generator=gen)]
        fake = G(torch.randn(batch, 2, generator=gen)).detach()
        loss, _ = objective.discriminator_loss(real, fake, gen)
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
        loss, _ = objective.generator_loss(G(torch.randn(batch, 2, generator=gen)))
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
    G.eval(), D.eval()
    for p in [*G.parameters(), *D.parameters()]:
        p.requires_grad_(False)
    features = DiscriminatorFeatures(D, FeatureExtractorConfig())
    cn = ConnectionNetwork(ConnectionNetworkConfig(features.out_dim, 2, hidden=64, groups=8))
    opt = torch.optim.Adam(cn.parameters(), 1e-3)
    for _ in range(cn_steps):  # eq. 5: fresh z every step, generated pairs only
        z = torch.randn(batch, 2, generator=gen)
        loss = ((cn(features(G(z))) - z) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return G, features, cn, rng


@pytest.mark.parametrize("drop", [4])
def test_a_gan_trained_without_a_mode_is_flagged_on_that_mode(drop: int) -> None:
    torch.set_num_threads(1)
    G, features, cn, rng = _train_without(drop)
    x, labels = _points(rng, 800)  # unseen test points of all eight modes
    with torch.no_grad():
        recon = G(cn(features(torch.from_numpy(x)))).numpy()
    mse = ((recon - x) ** 2).sum(1)
    report = per_class_report({"mse": mse}, labels, [f"mode{k}" for k in range(N_MODES)])
    flag = report["flags"]["mse"]
    dropped = f"mode{drop}"
    assert dropped in flag["flagged"], flag
    z_others = [v for c, v in flag["z"].items() if c != dropped]
    assert flag["z"][dropped] == min(flag["z"].values())
    assert flag["z"][dropped] < 2 * min(z_others), flag["z"]  # far beyond any other mode, not a borderline flag
    # The per-class MSE of the dropped mode is an order of magnitude above the median mode's.
    assert report["by_class"][dropped]["mse"]["mean"] > 10 * flag["median"]
