"""Cyclic baselines (training/cyclic/model.py): losses, one step, the ALI pairs, the VAE's KL, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from training.core.checkpoint import save_checkpoint
from training.cyclic.model import (
    MODELS,
    CyclicConfig,
    JointDiscriminator,
    ali_pairs,
    build_cyclic,
    kl_to_standard_normal,
    load_cyclic,
    make_optimizers,
    train_step,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny(model: str) -> CyclicConfig:
    return CyclicConfig(model=model, z_dim=4, g_width=8, e_width=8, d_width=8, d_hidden=16, batch_size=4,
                        device="cpu")  # fmt: skip


@pytest.mark.parametrize("model", MODELS)
def test_step_is_finite_and_moves_parameters(model: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(model)
    modules = build_cyclic(cfg)
    optimizers = make_optimizers(cfg, modules)
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in modules.items()}
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    stats = train_step(cfg, modules, optimizers, x, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    for name, module in modules.items():
        moved = any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters(), strict=True))
        assert moved, f"{model}: {name} did not change"
    if model == "alice":
        assert "rec_l2" in stats and stats["rec_l2"] > 0


def test_vae_kl_zero_at_prior() -> None:
    zeros = torch.zeros(3, 5)
    assert torch.allclose(kl_to_standard_normal(zeros, zeros), torch.zeros(3))
    assert (kl_to_standard_normal(torch.ones(3, 5), zeros) > 0).all()


def test_ali_discriminator_pairs() -> None:
    torch.manual_seed(0)
    cfg = tiny("ali")
    modules = build_cyclic(cfg)
    x, z = torch.rand(4, 1, 28, 28) * 2 - 1, torch.randn(4, cfg.z_dim)
    (xe, ze), (xg, zg) = ali_pairs(modules["E"], modules["G"], x, z)  # type: ignore[arg-type]
    assert xe is x and ze.shape == (4, cfg.z_dim)
    assert xg.shape == x.shape and zg is z
    D = modules["D"]
    assert isinstance(D, JointDiscriminator)
    assert D(xe, ze).shape == (4,) and D(xg, zg).shape == (4,)
    assert "D" not in build_cyclic(tiny("vae"))


@pytest.mark.parametrize("model", MODELS)
def test_checkpoint_round_trip(model: str, tmp_path) -> None:
    from dataclasses import asdict

    torch.manual_seed(0)
    cfg = tiny(model)
    modules = build_cyclic(cfg)
    path = save_checkpoint(tmp_path / "step-000001.safetensors", modules, make_optimizers(cfg, modules), asdict(cfg), 1)
    loaded, loaded_cfg = load_cyclic(path)
    assert loaded_cfg == cfg
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    for module in modules.values():
        module.eval()
    with torch.no_grad():
        assert torch.equal(loaded["G"](loaded["E"](x)), modules["G"](modules["E"](x)))


def test_config_rejects_unknown_model() -> None:
    with pytest.raises(ValueError, match="model"):
        CyclicConfig(model="gan").validate()


def test_cli_registered_and_rejects_bad_model(tmp_path) -> None:
    from typer.testing import CliRunner

    from training.cli.app import app

    runner = CliRunner()
    assert runner.invoke(app, ["train", "cyclic", "--help"]).exit_code == 0
    assert runner.invoke(app, ["evaluate", "cyclic", "--help"]).exit_code == 0
    result = runner.invoke(app, ["train", "cyclic", "--model", "gan", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
