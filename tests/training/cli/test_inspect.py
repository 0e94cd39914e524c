"""`inspect features` lists a discriminator graph's candidate D^f tensors (the shipped one here, read only)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from training.cli.app import app

ROOT = Path(__file__).resolve().parents[3]


def test_inspect_features_lists_tensors_and_marks_the_default() -> None:
    graph = ROOT / "models/fashion-mnist/discriminator_features.onnx"
    result = CliRunner().invoke(app, ["inspect", "features", "--discriminator-onnx", str(graph)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) > 5 and all("\t['batch'" in line for line in lines)
    marked = [line for line in lines if "default D^f" in line]
    assert len(marked) == 1 and marked[0].split("\t")[1] == "['batch', 3136]"  # the input of D's last FC (7·7·64)


def test_inspect_features_names_a_missing_graph(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", "features", "--discriminator-onnx", str(tmp_path / "D.onnx")])
    assert result.exit_code == 2 and "no ONNX graph at" in result.output
