"""The typer CLI end to end, in-process: a tiny run, resume, classifier and sample FD, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from training.cli.app import app

runner = CliRunner()
TINY = ["--z-dim", "8", "--g-width", "8", "--d-width", "8", "--feature-dim", "16", "--batch-size", "16",
        "--device", "cpu", "--log-every", "1"]  # fmt: skip


def test_train_resume_classifier_and_sample_fd(tmp_path: Path) -> None:
    run = tmp_path / "gan"
    result = runner.invoke(app, ["train", "gan", "--loss", "lsgan", "--steps", "2", "--checkpoint-every", "2",
                                 "--run-dir", str(run), *TINY])  # fmt: skip
    assert result.exit_code == 0, result.output
    command = (run / "command.txt").read_text()
    assert command.startswith("python -m training train gan --data fashion-mnist --loss lsgan --steps 2")
    assert "--z-dim 8" in command and "--lr-g" not in command  # resolved options; unset ones left out
    result = runner.invoke(app, ["train", "gan", "--resume", str(run / "checkpoints/step-000002.safetensors"),
                                 "--steps", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]

    cls = tmp_path / "cls"
    result = runner.invoke(app, ["train", "classifier", "--steps", "30", "--batch-size", "32", "--device", "cpu",
                                 "--run-dir", str(cls)])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((cls / "metrics.json").read_text())
    assert 0.3 < metrics["test_accuracy"] <= 1.0  # 30 steps already beat chance (0.1) by far

    out = tmp_path / "fd.json"
    last = run / "checkpoints/step-000003.safetensors"
    result = runner.invoke(app, ["evaluate", "samples", "--checkpoint", str(last),
                                 "--classifier", str(cls / "classifier.safetensors"), "--n", "200", "--out", str(out),
                                 "--device", "cpu", "--pairs", "20"])  # fmt: skip
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    # An untrained generator is far from the data; real train images are close to real test images.
    assert scored["fd_samples_vs_test"] > 3 * scored["fd_train_vs_test"] > 0
    assert scored["ms_ssim_diversity"]["pairs"] == 20 and scored["classifier_is_real"]["mean"] > 1
    assert sum(scored["sample_class_histogram"]) == 200


def test_bad_data_path_gives_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "gan", "--data-dir", str(tmp_path / "missing"), "--steps", "1",
                                 "--run-dir", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2
    assert "apt-get install dataset-fashion-mnist" in result.output
    assert "Traceback" not in result.output


def test_cross_field_error_before_any_work(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "gan", "--loss", "wgan-gp", "--norm", "batch", "--run-dir",
                                 str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2 and "batch norm in the critic" in result.output
    assert not (tmp_path / "run").exists()


def test_folder_needs_its_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "gan", "--data", "folder", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--data-dir, --size and --channels" in result.output


def test_recorded_command_renders_flags_as_flags() -> None:
    from training.cli.common import command_line as _command_line

    demo = typer.Typer()
    seen: list[str] = []

    @demo.command()
    def run(ctx: typer.Context, steps: int = 3, overwrite: bool = False, name: str | None = None) -> None:
        seen.append(_command_line(ctx))

    assert runner.invoke(demo, ["--overwrite", "--steps", "5"]).exit_code == 0
    assert runner.invoke(demo, []).exit_code == 0
    assert seen[0].endswith("--steps 5 --overwrite")  # a flag, not "--overwrite True"; unset options left out
    assert seen[1].endswith("--steps 3 --no-overwrite")
