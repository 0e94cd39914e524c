"""Inverters (IJCV Table 1): every method lowers its own objective, checkpoints rebuild the inverter alone, the
evaluation gives sane PSNR/SSIM, config errors come before any work, and the CLI runs end to end.

The GANs are tiny (width 8) and trained for 2 steps, so their D features are nearly random and G's images noise:
enough to test the machinery, not the method's quality. CN is 128 wide, the least validation allows (4 channels
per GroupNorm group).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize
from typer.testing import CliRunner

from training.cli.app import app
from training.core.config import config_from_dict, to_dict
from training.datasets.config import DataConfig
from training.evaluation.reconstruction import evaluate_reconstruction, latent_error
from training.gan.config import gan_config
from training.gan.model import load_generator_and_discriminator
from training.gan.train import train_gan
from training.inversion.dfi import (
    METHODS,
    InverterConfig,
    build_inverter,
    fit_inverter,
    infer_latents,
    load_export_ready,
    load_gan_split,
    load_inverter,
    load_inverter_module,
    read_gan_config,
    train_inverter,
)
from training.inversion.networks import FeatureExtractorConfig

TINY = dict(z_dim=8, g_width=8, d_width=8, feature_dim=16)
runner = CliRunner()


class _TinyGANs(dict):
    """Tiny GAN checkpoints by loss, trained on first use (about a second each)."""

    def __init__(self, root: pytest.TempPathFactory) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, loss: str) -> Path:
        config = gan_config(DataConfig("fashion-mnist"), (1, 28, 28), loss, **TINY, steps=2, batch_size=16,
                            log_every=1, sample_every=2, checkpoint_every=2, rf_pretrain_steps=3,
                            device="cpu")  # fmt: skip
        self[loss] = train_gan(config, self.root.mktemp(loss), quiet=True)
        return self[loss]


@pytest.fixture(scope="module")
def gans(tmp_path_factory: pytest.TempPathFactory) -> _TinyGANs:
    """dcgan (batch-norm D, the main case) and rfgan (D whose `last` includes a frozen encoder's features)."""
    return _TinyGANs(tmp_path_factory)


def tiny_inverter(checkpoint: Path, method: str = "dfi", steps: int = 60, **overrides) -> InverterConfig:
    values = dict(hidden=128, batch_size=64, lr=3e-3, log_every=1, sample_every=steps, device="cpu")
    return InverterConfig(str(checkpoint), method=method, steps=steps, **{**values, **overrides})


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_its_own_loss(method: str, gans, tmp_path: Path) -> None:
    path = train_inverter(tiny_inverter(gans["dcgan"], method), tmp_path, quiet=True)
    records = read_log(tmp_path)
    assert [r["step"] for r in records] == list(range(61))  # step 0: before training
    losses = [r["loss"] for r in records[1:]]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, f"{method}: training loss did not fall"
    # The held-out value of the method's own objective: fixed generated pairs (latent) or test images (image).
    key = "heldout_latent_error" if method in ("dfi", "enc_latent") else "heldout_image_mse"
    assert records[-1][key] < records[0][key], f"{method}: {key} {records[0][key]:.4f} → {records[-1][key]:.4f}"
    assert records[-1]["lr"] < 1e-4 < records[1]["lr"] == 3e-3  # cosine decay to ~0
    assert path == tmp_path / "inverter.safetensors" and (tmp_path / "samples" / "step-000060.png").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["method"] == method


def test_dfi_latent_error_on_fresh_pairs_falls(gans, tmp_path: Path) -> None:
    config = tiny_inverter(gans["dcgan"], "dfi", steps=150, log_every=50)
    gan = read_gan_config(config.gan_checkpoint)
    G, D, _ = load_generator_and_discriminator(config.gan_checkpoint)
    torch.manual_seed(config.seed)  # fit_inverter seeds the same way: this is its starting point
    untrained = build_inverter(config, gan, D).eval()
    before = latent_error(untrained, G, 500, gan.generator.z_dim, "cpu", seed=123)
    _, trained = fit_inverter(config, tmp_path, quiet=True)
    after = latent_error(trained, G, 500, gan.generator.z_dim, "cpu", seed=123)  # pairs never seen in training
    assert after < 0.8 * before, f"latent error {before:.4f} → {after:.4f}"


@pytest.mark.parametrize(("loss", "method"), [("dcgan", "dfi"), ("dcgan", "enc_latent"), ("rfgan", "dfi")])
def test_checkpoint_rebuilds_the_inverter_alone(loss: str, method: str, gans, tmp_path: Path) -> None:
    gan_copy = tmp_path / "gan.safetensors"
    shutil.copy(gans[loss], gan_copy)
    taps = ("actv7-0", "last") if loss == "dcgan" else ("last",)  # a pooled intermediate tap too (sec. 4.7)
    config = tiny_inverter(gan_copy, method, steps=5, features=FeatureExtractorConfig(taps, pool_size=2))
    path, trained = fit_inverter(config, tmp_path / "run", quiet=True)
    x = load_gan_split(read_gan_config(gan_copy), "test").batch(torch.arange(64))
    expected = infer_latents(trained, x)

    gan_copy.unlink()  # the inverter checkpoint alone must do: the GAN's config and D's weights travel in it
    inverter, loaded = load_inverter_module(path)
    assert loaded == config
    assert not inverter.training and not any(p.requires_grad for p in inverter.parameters())
    z_batch = inverter(x)
    assert torch.equal(z_batch, expected)
    # Eval mode: batch norm uses running statistics and GroupNorm is per sample, so no sample sees another.
    # Only float32 summation order differs between a batch of 64 and of 1 (other conv/GEMM kernels): ~1e-7.
    z_single = torch.cat([inverter(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(z_single, z_batch, rtol=0, atol=1e-5)


def test_export_ready_bakes_spectral_norm(gans, tmp_path: Path) -> None:
    """SNGAN's D carries spectral-norm parametrisations (their `vdot` does not export to ONNX); baking keeps ẑ."""
    path, trained = fit_inverter(tiny_inverter(gans["sngan"], "dfi", steps=2), tmp_path, quiet=True)
    baked = load_export_ready(path)
    assert any(parametrize.is_parametrized(m) for m in trained.modules())
    assert not any(parametrize.is_parametrized(m) for m in baked.modules())
    x = load_gan_split(read_gan_config(gans["sngan"]), "test").batch(torch.arange(16))
    torch.testing.assert_close(baked(x), trained(x), rtol=0, atol=1e-6)


def test_load_inverter_returns_frozen_models_and_checks_the_gan(gans, tmp_path: Path) -> None:
    path = train_inverter(tiny_inverter(gans["dcgan"], "dfi", steps=2), tmp_path, quiet=True)
    inverter, G, D, config = load_inverter(path)
    assert config.method == "dfi" and config.kind == "inverter"
    for module in (inverter, G, D):
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    with pytest.raises(ValueError, match="not the GAN"):
        load_inverter(path, gan_checkpoint=gans["rfgan"])


def test_evaluate_reconstruction_ranges_and_refinement_gain(gans, tmp_path: Path) -> None:
    _, trained = fit_inverter(tiny_inverter(gans["dcgan"], "dfi", steps=30), tmp_path, quiet=True)
    G, _, _ = load_generator_and_discriminator(gans["dcgan"])
    test = load_gan_split(read_gan_config(gans["dcgan"]), "test")
    result = evaluate_reconstruction(trained, G, test, n=20, device="cpu", batch=8, refine_steps=50)
    assert result["n"] == 20 and result["psnr"]["n"] == 20  # the one summary format: {"mean", "std", "n"}
    assert 0 < result["psnr"]["mean"] < 60 and result["psnr"]["std"] > 0
    assert -1 <= result["ssim"]["mean"] <= 1 and result["ssim"]["std"] >= 0
    assert 0 < result["latent_error"] < 10
    refined = result["refined"]
    assert refined["steps"] == 50 and refined["psnr"]["mean"] > result["psnr"]["mean"]
    assert refined["mse"]["mean"] < result["mse"]["mean"]


def test_cross_field_errors_come_before_any_work(gans, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="method must be one of dfi, dfi_image, enc_latent, enc_image"):
        train_inverter(tiny_inverter(gans["dcgan"], "pca"), run)
    with pytest.raises(ValueError, match=r"unknown tap\(s\) \['actv3-0'\]; the discriminator has \['actv14-0', "):
        train_inverter(tiny_inverter(gans["dcgan"], features=FeatureExtractorConfig(("actv3-0", "last"))), run)
    with pytest.raises(ValueError, match="latent loss"):
        train_inverter(tiny_inverter(gans["dcgan"], latent_loss="huber"), run)
    with pytest.raises(ValueError, match="multiple of CN's 32 GroupNorm groups"):
        train_inverter(tiny_inverter(gans["dcgan"], hidden=64), run)
    with pytest.raises(FileNotFoundError):
        train_inverter(tiny_inverter(tmp_path / "missing.safetensors"), run)
    assert not run.exists()
    with pytest.raises(ValueError, match="expected a .inverter. config, got kind .gan."):
        config_from_dict(to_dict(read_gan_config(gans["dcgan"])), expected=InverterConfig)


def test_cli_trains_and_reconstructs(gans, tmp_path: Path) -> None:
    run = tmp_path / "inv"
    result = runner.invoke(app, ["train", "inverter", "--gan", str(gans["dcgan"]), "--steps", "3", "--hidden", "128",
                                 "--batch-size", "16", "--log-every", "1", "--taps", "actv7-0,last",
                                 "--pool-size", "2", "--device", "cpu", "--run-dir", str(run)])  # fmt: skip
    assert result.exit_code == 0, result.output
    command = (run / "command.txt").read_text()
    assert "inverter --gan" in command and "--method dfi" in command and "--taps actv7-0,last" in command
    assert [r["step"] for r in read_log(run)] == [0, 1, 2, 3]

    result = runner.invoke(app, ["evaluate", "reconstruction",
                                 "--inverter", str(run / "inverter.safetensors"), "--n", "20",
                                 "--refine-steps", "2", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output and "dfi^opt (adam, 2 steps)" in result.output
    scored = json.loads((run / "reconstruction.json").read_text())
    assert scored["n"] == 20 and scored["method"] == "dfi" and scored["data"] == "fashion-mnist"
    assert {"psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "latent_error"} <= scored.keys()
    assert scored["refined"]["steps"] == 2 and "psnr_mean" in scored["refined"]
    assert (run / "reconstruction.png").is_file()


def test_cli_errors_are_clean(gans, tmp_path: Path) -> None:
    run = tmp_path / "inv"
    result = runner.invoke(app, ["train", "inverter", "--gan", str(gans["dcgan"]), "--taps", "actv3-0", "--run-dir",
                                 str(run)])  # fmt: skip
    assert result.exit_code == 2 and "the discriminator has ['actv14-0', 'actv7-0', 'last']" in result.output
    assert "Traceback" not in result.output and not run.exists()
    result = runner.invoke(
        app, ["train", "inverter", "--gan", str(tmp_path / "nope.safetensors"), "--run-dir", str(run)]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["evaluate", "reconstruction",
                                 "--inverter", str(tmp_path / "x.safetensors"), "--refine-method",
                                 "newton"])  # fmt: skip
    assert result.exit_code == 2 and "--refine-method must be one of adam, lbfgs" in result.output
