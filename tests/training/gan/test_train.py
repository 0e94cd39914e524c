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


# -- issue 22: EMA, DiffAugment, hinge, sample FD along training; issue 23: classes left out ------------------------

STRONGER = dict(ema_decay=0.9, augment="color,translation,cutout")


@pytest.mark.parametrize(("loss", "extra"), [("dcgan", {**STRONGER, "hinge": True}), ("sngan", STRONGER)])
def test_resume_with_ema_and_augmentation_reproduces_the_uninterrupted_run(loss: str, extra: dict,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    straight = train_gan(tiny_config(loss, steps=4, **extra), tmp_path / "straight", quiet=True)
    train_gan(tiny_config(loss, steps=2, **extra), tmp_path / "split", quiet=True)
    resumed = resume_gan(tmp_path / "split" / "checkpoints" / "step-000002.safetensors", steps=4, quiet=True)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert any(key.startswith("G_ema.module.") for key in a)  # the average is checkpointed, with its count
    assert a["G_ema.n_averaged"].item() == 4
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{loss}: {key} differs after resume")


def test_the_ema_generator_is_the_one_loaded_for_sampling_and_inversion(tmp_path: Path) -> None:
    final = train_gan(tiny_config("dcgan", steps=4, ema_decay=0.5), tmp_path, quiet=True)
    tensors = load_file(str(final))
    G, _, _ = load_generator_and_discriminator(final)
    for key, value in G.state_dict().items():
        torch.testing.assert_close(value, tensors[f"G_ema.module.{key}"], rtol=0, atol=0)
    raw = [
        k
        for k in G.state_dict()
        if k.endswith("weight") and not torch.equal(tensors[f"G.{k}"], tensors[f"G_ema.module.{k}"])
    ]
    assert raw, "the EMA weights should differ from the last raw weights after 4 steps at β = 0.5"


def test_hinge_replaces_the_adversarial_loss_and_is_refused_for_wgan_gp() -> None:
    config = tiny_config("dcgan", steps=1, hinge=True)
    torch.manual_seed(0)
    modules = build_gan(config)
    D = modules["D"].eval()
    objective = GANObjective(config.loss, D)
    real, fake = torch.rand(8, 1, 28, 28) * 2 - 1, torch.rand(8, 1, 28, 28) * 2 - 1
    d_loss, _ = objective.discriminator_loss(real, fake, torch.Generator())
    expected = torch.relu(1 - D(real)).mean() + torch.relu(1 + D(fake)).mean()
    torch.testing.assert_close(d_loss, expected)
    torch.testing.assert_close(objective.generator_loss(fake)[0], -D(fake).mean())
    with pytest.raises(ValueError, match="WGAN-GP's critic loss"):
        tiny_config("wgan-gp", steps=1, hinge=True)
    with pytest.raises(ValueError, match="unknown augmentation"):
        tiny_config("dcgan", steps=1, augment="mixup")
    with pytest.raises(ValueError, match="ema_decay must be in"):
        tiny_config("dcgan", steps=1, ema_decay=1.0)


def test_a_gan_trained_without_classes_never_sees_them(tmp_path: Path, fashion_train) -> None:
    kept = fashion_train.without_classes([4, 1])
    assert len(kept) == 48_000 and not set(kept.labels.tolist()) & {1, 4}
    assert kept.class_names == fashion_train.class_names  # indices keep their meaning
    with pytest.raises(ValueError, match="cannot leave out \\[12\\]"):
        fashion_train.without_classes([12])
    config = gan_config(DataConfig("fashion-mnist", exclude_classes=(4,)), (1, 28, 28), "dcgan", **TINY, steps=1,
                        batch_size=16, sample_every=1, checkpoint_every=1, device="cpu")  # fmt: skip
    final = train_gan(config, tmp_path, quiet=True)
    _, _, loaded = load_generator_and_discriminator(final)
    assert loaded.data.exclude_classes == (4,)  # recorded in the checkpoint's config, so the run says what it saw


def test_sample_fd_is_scored_along_training_and_the_curve_survives_a_resume(tmp_path: Path) -> None:
    from training.classifiers.classifier import train_classifier
    from training.classifiers.config import ClassifierTrainConfig
    from training.classifiers.networks import ClassifierConfig

    cls_config = ClassifierTrainConfig(DataConfig("fashion-mnist"), ClassifierConfig((1, 28, 28), 10, width=8),
                                       steps=5, batch_size=16, device="cpu")  # fmt: skip
    classifier, _ = train_classifier(cls_config, tmp_path / "cls", quiet=True)
    from training.evaluation.samples import sample_fd_for

    extra = dict(ema_decay=0.5, fd_classifier=str(classifier), fd_samples=64)
    with pytest.raises(ValueError, match="pass sample_fd_for"):
        train_gan(tiny_config("dcgan", steps=4, **extra), tmp_path / "gan", quiet=True)
    train_gan(tiny_config("dcgan", steps=4, **extra), tmp_path / "gan", quiet=True, sample_fd_for=sample_fd_for)
    resume_gan(tmp_path / "gan" / "checkpoints" / "step-000002.safetensors", steps=6, quiet=True,
               sample_fd_for=sample_fd_for)  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "gan" / "fd.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]  # step 4 re-scored once after the resume from step 2
    assert all(r["n"] == 64 and r["fd"] > 0 and r["fd_raw"] > 0 for r in records)
    assert (tmp_path / "gan" / "fd_curve.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="fd_every needs fd_classifier"):
        tiny_config("dcgan", steps=1, fd_every=2)


def test_the_flat_rule_needs_three_checkpoints_within_the_tolerance() -> None:
    from training.gan.convergence import is_flat

    assert not is_flat([30.0, 29.5])  # too few points
    assert is_flat([40.0, 30.0, 29.5, 30.4])  # the last three within 5 % of 29.5
    assert not is_flat([30.0, 28.0, 26.0])  # still falling: 4 / 26 = 15 %
    assert not is_flat([26.0, 30.0, 26.5])  # swinging


def test_the_ema_generator_gets_batchnorm_statistics_of_its_own_weights(tmp_path: Path) -> None:
    """Averaged weights with averaged running statistics do not fit each other; the checkpointed EMA G carries the
    statistics update_bn recomputes for its weights (so loading it again and recomputing changes nothing)."""
    from training.gan.model import refresh_ema_statistics

    config = tiny_config("dcgan", steps=4, ema_decay=0.5)
    final = train_gan(config, tmp_path, quiet=True)
    tensors = load_file(str(final))
    means = [k for k in tensors if k.startswith("G_ema.module.") and k.endswith("running_mean")]
    assert means
    modules = build_gan(config)
    from training.core.checkpoint import load_checkpoint

    load_checkpoint(final, modules)
    refresh_ema_statistics(modules, config.generator.z_dim, config.batch_size, config.seed)
    for key in means:
        recomputed = modules["G_ema"].state_dict()[key[len("G_ema.") :]]
        torch.testing.assert_close(recomputed, tensors[key], rtol=0, atol=1e-6)
        assert not torch.equal(tensors[key], tensors["G." + key[len("G_ema.module.") :]])  # not G's own statistics
