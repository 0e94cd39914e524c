"""`train cyclic` and `train scgan` build their networks for the data set's image shape (emoji is 3×64×64)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from training.cli.app import app


def test_cyclic_trains_on_emoji_at_its_own_shape(tmp_path: Path) -> None:
    run = tmp_path / "vae"
    result = CliRunner().invoke(app, ["train", "cyclic", "--model", "vae", "--data", "emoji", "--run-dir", str(run),
                                      "--steps", "2", "--sample-every", "2", "--checkpoint-every", "2",
                                      "--threads", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["shape"] == [3, 64, 64]


def test_scgan_accepts_a_64px_patch_box_on_emoji(tmp_path: Path) -> None:
    run = tmp_path / "scgan"
    result = CliRunner().invoke(app, ["train", "scgan", "--data", "emoji", "--run-dir", str(run), "--steps", "1",
                                      "--patch-steps", "1", "--dfi-steps", "1", "--patch-top", "16",
                                      "--patch-left", "16", "--patch-size", "32", "--threads", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (run / "scgan.safetensors").is_file()
