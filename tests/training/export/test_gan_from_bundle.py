"""Rebuilding a bundle's GAN as a checkpoint (training/export/gan_from_bundle.py) and scoring inverters with it
(training/evaluation/inverters.py): the rebuilt G and D must reproduce the bundle's own ONNX graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dfi_core.bundle import load_bundle
from training.cli.app import app
from training.core.checkpoint import read_metadata
from training.evaluation.bundle import evaluate_bundle
from training.evaluation.inverters import evaluate_inverters, spearman, write_inverter_report
from training.export.gan_from_bundle import gan_checkpoint_from_bundle
from training.inversion.dfi import load_inverter

BUNDLE = Path(__file__).resolve().parents[3] / "models" / "fashion-mnist"
# Parity bound of the shipped-bundle tests (ONNX Runtime vs torch on the same weights): float32 kernel differences.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gan_checkpoint_from_bundle(BUNDLE, tmp_path_factory.mktemp("gan") / "step-010000.safetensors")


@pytest.fixture(scope="module")
def inverter_copy(rebuilt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle's inverter.safetensors, pointed at the rebuilt GAN (its metadata names the original run's path)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(BUNDLE / "inverter.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
    config = json.loads(meta["config"])
    config["gan_checkpoint"] = str(rebuilt)
    path = tmp_path_factory.mktemp("inv") / "inverter.safetensors"
    save_file(
        load_file(str(BUNDLE / "inverter.safetensors")), str(path), metadata={**meta, "config": json.dumps(config)}
    )
    return path


def test_the_rebuilt_gan_reproduces_the_bundles_graphs(inverter_copy: Path) -> None:
    bundle = load_bundle(BUNDLE)
    model, G, _, _ = load_inverter(inverter_copy)
    x = (torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()
    z = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        image_torch, z_torch = G(z).numpy(), model(torch.from_numpy(x)).numpy()
    image_onnx = bundle.open_graph("generator", providers=["CPUExecutionProvider"])(z.numpy())
    z_onnx = bundle.open_graph("invert", providers=["CPUExecutionProvider"])(x)
    assert np.abs(image_torch - image_onnx).max() <= TOLERANCE
    assert np.abs(z_torch - z_onnx).max() <= TOLERANCE


def test_a_bundle_without_its_inverter_weights_is_refused(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(BUNDLE / "generator.safetensors", partial)
    with pytest.raises(ValueError, match="no inverter.safetensors"):
        gan_checkpoint_from_bundle(partial, tmp_path / "out.safetensors")


def test_inverter_scores_match_the_bundle_eval_on_the_same_images(inverter_copy: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "classifier", "--data", "fashion-mnist", "--steps", "30", "--seed", "0",
                                  "--run-dir", str(tmp_path / "cls"), "--threads", "1"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    classifier = tmp_path / "cls" / "classifier.safetensors"
    result = evaluate_inverters({"shipped": inverter_copy}, classifier, n=40, repeats=2)
    onnx = evaluate_bundle(BUNDLE, ["dfi"], n=40, repeats=2)
    for key in ("psnr", "ssim"):  # torch vs ONNX Runtime on the same 80 images: parity-sized differences only
        assert result["table"]["shipped"][key]["mean"] == pytest.approx(onnx["table"]["dfi"][key]["mean"], abs=1e-3)
    assert result["rows"]["shipped"]["taps"] == "actv7-0,last" and result["rows"]["shipped"]["gan_steps"] == 10_000
    json_path, md_path, png_path, plot_path = write_inverter_report(result, tmp_path / "report", "sweep")
    config = read_metadata(inverter_copy)["config"]  # the shipped inverter's own settings (R, steps)
    row = f"| shipped | sngan | 10000 | actv7-0,last | {config['features']['pool_size']} | 2 | {config['steps']} |"
    assert row in md_path.read_text()
    assert png_path.stat().st_size > 0 and plot_path.stat().st_size > 0
    assert json.loads(json_path.read_text())["repeats"] == 2


def test_the_cli_names_a_malformed_row() -> None:
    result = CliRunner().invoke(app, ["evaluate", "inverters", "--inverter", "no-equals-sign", "--classifier", "x"])
    assert result.exit_code == 2 and "NAME=PATH" in result.output


def test_spearman_is_one_for_the_same_order_and_minus_one_for_the_reverse() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_rebuilt_checkpoint_records_the_gans_training_command(tmp_path: Path) -> None:
    """A bundle exported from the rebuilt checkpoint must still say how its GAN was trained (RUN/command.txt)."""
    out = tmp_path / "run" / "checkpoints" / "step-010000.safetensors"
    gan_checkpoint_from_bundle(BUNDLE, out)
    command = (tmp_path / "run" / "command.txt").read_text().strip()
    assert command.startswith("python -m training train gan --data fashion-mnist --loss sngan")
    assert command in load_bundle(BUNDLE).manifest.training.commands
