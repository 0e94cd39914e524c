"""Every objective trains without NaN and moves its losses; a resumed run repeats the same next steps.

Models are tiny (width 8) so each run takes about a second on one CPU thread; the data are real Fashion-MNIST.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.core.config import config_from_dict, to_dict
from training.datasets import load_dataset
from training.datasets.config import DataConfig
from training.gan.config import gan_config
from training.gan.losses import LOSSES, GANObjective
from training.gan.model import build_gan, load_generator_and_discriminator
from training.gan.train import resume_gan, train_gan

TINY = dict(z_dim=8, g_width=8, d_width=8, feature_dim=16)


def tiny_config(loss: str, steps: int, **overrides):
    return gan_config(DataConfig("fashion-mnist"), (1, 28, 28), loss, **TINY, steps=steps, batch_size=16,
                      log_every=1, sample_every=steps, checkpoint_every=2, rf_pretrain_steps=3,
                      device="cpu", **overrides)  # fmt: skip


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_descends_on_its_own_objective(loss: str, fashion_train) -> None:
    """A few D steps lower D's loss on a fixed batch; then a few G steps lower G's loss against that D."""
    config = tiny_config(loss, steps=1)
    torch.manual_seed(0)
    modules = build_gan(config)
    G, D = modules["G"], modules["D"]
    objective = GANObjective(config.loss, D, modules.get("denoiser"))  # type: ignore[arg-type]
    rng = torch.Generator().manual_seed(0)
    real = fashion_train.batch(torch.arange(32))
    z = torch.randn(32, 8, generator=rng)
    opt_d = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=1e-3)
    with torch.no_grad():
        fake = G(z)

    def d_loss() -> float:
        return objective.discriminator_loss(real, fake, torch.Generator().manual_seed(1))[0].item()

    before = d_loss()
    for _ in range(8):
        loss_value, _ = objective.discriminator_loss(real, fake, torch.Generator().manual_seed(1))
        opt_d.zero_grad()
        loss_value.backward()
        opt_d.step()
    after = d_loss()
    assert torch.isfinite(torch.tensor([before, after])).all()
    assert after < before, f"{loss}: D loss did not fall ({before:.4f} → {after:.4f})"

    if "denoiser" in modules:
        opt_r = torch.optim.Adam(modules["denoiser"].parameters(), lr=1e-3)
        r_before = objective.denoiser_loss(real, torch.Generator().manual_seed(2)).item()
        for _ in range(8):
            r = objective.denoiser_loss(real, torch.Generator().manual_seed(2))
            opt_r.zero_grad()
            r.backward()
            opt_r.step()
        assert objective.denoiser_loss(real, torch.Generator().manual_seed(2)).item() < r_before

    D.eval()
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    g_before = objective.generator_loss(G(z))[0].item()
    for _ in range(8):
        g, _ = objective.generator_loss(G(z))
        opt_g.zero_grad()
        g.backward()
        opt_g.step()
    g_after = objective.generator_loss(G(z))[0].item()
    assert g_after < g_before, f"{loss}: G loss did not fall ({g_before:.4f} → {g_after:.4f})"


@pytest.mark.parametrize("loss", LOSSES)
def test_training_run_writes_a_self_describing_folder(loss: str, tmp_path: Path) -> None:
    final = train_gan(tiny_config(loss, steps=4), tmp_path, quiet=True)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    values = [r["loss_D"] for r in records] + [r["loss_G"] for r in records]
    assert all(torch.isfinite(torch.tensor(values)))
    assert len({round(r["loss_D"], 6) for r in records}) > 1  # the loss moves from step to step
    assert (tmp_path / "samples" / "step-000004.png").is_file()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["loss"]["name"] == loss and saved["optim"]["n_critic"] >= 1
    assert final.name == "step-000004.safetensors"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000002.safetensors", final.name]
    G, D, config = load_generator_and_discriminator(final)  # rebuilt from the checkpoint alone
    assert not G.training and G(torch.zeros(2, config.generator.z_dim)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("loss", ["dcgan", "wgan-gp", "dfm", "rfgan"])
def test_resume_reproduces_the_uninterrupted_run(loss: str, tmp_path: Path) -> None:
    straight = train_gan(tiny_config(loss, steps=4), tmp_path / "straight", quiet=True)
    train_gan(tiny_config(loss, steps=2), tmp_path / "split", quiet=True)
    resumed = resume_gan(tmp_path / "split" / "checkpoints" / "step-000002.safetensors", steps=4, quiet=True)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{loss}: {key} differs after resume")


def test_config_round_trips_and_cross_field_errors_come_first() -> None:
    config = tiny_config("wgan-gp", steps=3)
    assert config_from_dict(json.loads(json.dumps(to_dict(config)))) == config
    with pytest.raises(ValueError, match="batch norm in the critic"):
        tiny_config("wgan-gp", steps=3, norm="batch")
    with pytest.raises(ValueError, match="spectrally normalised"):
        tiny_config("sngan", steps=3, norm="batch")
    with pytest.raises(ValueError, match="rfgan needs images"):
        gan_config(DataConfig("gaussians"), (2,), "rfgan")


def test_points_gan_trains_on_the_gaussians(tmp_path: Path) -> None:
    config = gan_config(DataConfig("gaussians"), (2,), "dcgan", z_dim=2, steps=3, batch_size=32,
                        log_every=1, sample_every=3, checkpoint_every=3, device="cpu")  # fmt: skip
    train_gan(config, tmp_path, quiet=True)
    assert (tmp_path / "samples" / "step-000003.png").is_file()
    assert len(load_dataset("gaussians", "test")) == 2_000
