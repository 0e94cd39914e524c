"""RunDir: numbered folders, config.json written once, the log round trip, checkpoints and final weights."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from training.core.runs import FINAL_WEIGHTS, RunDir, next_run_dir


@dataclass
class TinyConfig:
    steps: int = 4
    shape: tuple[int, ...] = (1, 28, 28)
    lr: float = 1e-3
    kind: str = field(default="tiny", init=False)


def test_create_numbers_after_the_highest_run(tmp_path: Path) -> None:
    (tmp_path / "00007-old").mkdir()
    (tmp_path / "notes").mkdir()  # not numbered: ignored
    (tmp_path / "00099.txt").write_text("")  # a file, not a run folder
    first = RunDir.create(tmp_path, "fashion-mnist-dcgan")
    second = RunDir.create(tmp_path, "fashion-mnist-dcgan")
    assert (first.name, second.name) == ("00008-fashion-mnist-dcgan", "00009-fashion-mnist-dcgan")
    assert first.path.is_dir() and next_run_dir(tmp_path / "fresh", "x").name == "00000-x"


def test_file_names_are_the_shipped_ones(tmp_path: Path) -> None:
    run = RunDir(str(tmp_path))  # a str is accepted and kept as a Path
    names = (run.config_path, run.log_path, run.command_path, run.metrics_path, run.samples, run.checkpoints)
    assert [p.relative_to(tmp_path).as_posix() for p in names] == [
        "config.json", "log.jsonl", "command.txt", "metrics.json", "samples", "checkpoints"
    ]  # fmt: skip
    assert run.checkpoint_path(2000).relative_to(tmp_path).as_posix() == "checkpoints/step-002000.safetensors"
    for kind in ("inverter", "classifier", "attributes", "scgan"):
        assert run.final_weights(kind) == tmp_path / f"{kind}.safetensors"
    with pytest.raises(ValueError, match="unknown run kind 'nope'"):
        run.final_weights("nope")
    assert not any(tmp_path.iterdir()), "properties must not create anything"


def test_every_config_kind_has_its_final_weights() -> None:
    import training.classifiers.attributes  # noqa: F401 - each import registers its config kind
    import training.classifiers.config  # noqa: F401
    import training.cyclic.model  # noqa: F401
    import training.gan.config  # noqa: F401
    import training.inversion.dfi  # noqa: F401
    import training.scgan.model  # noqa: F401
    from training.core.config import registered_kinds

    assert set(FINAL_WEIGHTS) == set(registered_kinds())


def test_config_is_written_once(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    config = TinyConfig()
    run.write_config(config)
    written = run.config_path.read_text()
    assert written == json.dumps({"steps": 4, "shape": [1, 28, 28], "lr": 1e-3, "kind": "tiny"}, indent=2)
    assert run.read_config()["shape"] == [1, 28, 28]

    run.write_config(TinyConfig())  # the identical config again (a rerun): accepted, file untouched
    assert run.config_path.read_text() == written

    with pytest.raises(ValueError, match="differs in lr, steps"):
        run.write_config(replace(config, steps=8, lr=0.1))
    with pytest.raises(ValueError, match="differs in steps"):
        run.check_config(replace(config, steps=8))
    assert run.config_path.read_text() == written, "a refused config must not touch the file"

    # a resume may extend the run: `steps` is rewritten, any other change is still refused
    run.write_config(replace(config, steps=8), may_change=("steps",))
    assert run.read_config()["steps"] == 8
    with pytest.raises(ValueError, match="differs in lr"):
        run.write_config(replace(config, steps=8, lr=0.1), may_change=("steps",))


def test_unreadable_config_is_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.config_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        run.write_config(TinyConfig())


def test_log_round_trip(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.read_log() == []
    records = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25, "seconds": 1.5}]
    log = run.log()
    for record in records:
        log.write(record)
    run.log().write({"step": 3, "loss": 0.125})  # a resumed run appends
    assert run.read_log() == [*records, {"step": 3, "loss": 0.125}]
    run.log(fresh=True).write({"step": 1, "loss": 1.0})  # a retrain that cannot resume replaces the log
    assert run.read_log() == [{"step": 1, "loss": 1.0}]


def test_command_round_trip(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(FileNotFoundError):
        run.read_command()
    run.write_command("python -m training train gan --loss dcgan")
    assert run.command_path.read_text() == "python -m training train gan --loss dcgan\n"
    assert run.read_command() == "python -m training train gan --loss dcgan"


def test_latest_checkpoint_and_pruning(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        run.latest_checkpoint()
    for step in (2, 10, 4):
        run.checkpoint_path(step).parent.mkdir(exist_ok=True)
        run.checkpoint_path(step).write_bytes(b"")
    (run.checkpoints / "notes.txt").write_text("")  # not a checkpoint
    assert run.latest_checkpoint() == run.final_weights("gan") == run.final_weights("cyclic") == run.checkpoint_path(10)
    run.prune_checkpoints(0)  # 0 keeps every checkpoint (the loops' [:-keep] slice)
    assert len(run.checkpoint_files()) == 3
    run.prune_checkpoints(2)
    assert run.checkpoint_files() == [run.checkpoint_path(4), run.checkpoint_path(10)]
    assert (run.checkpoints / "notes.txt").is_file()


def test_start_run_refuses_a_folder_of_another_run_before_recording_the_command(tmp_path: Path) -> None:
    from training.cli.common import start_run

    folder = tmp_path / "run"
    app = typer.Typer()

    @app.command()
    def train(ctx: typer.Context, steps: int = 4) -> None:
        start_run(ctx, folder, TinyConfig(steps=steps))
        RunDir(folder).write_config(TinyConfig(steps=steps))

    runner = CliRunner()
    assert runner.invoke(app, ["--steps", "4"]).exit_code == 0
    first = RunDir(folder).read_command()
    assert first.endswith("--steps 4")
    result = runner.invoke(app, ["--steps", "8"])
    assert isinstance(result.exception, ValueError) and "differs in steps" in str(result.exception)
    assert RunDir(folder).read_command() == first, "the refused command must not replace the recorded one"
    assert runner.invoke(app, ["--steps", "4"]).exit_code == 0  # the same run again is fine


def test_holding_finds_a_run_folder_only_above_its_checkpoints_folder(tmp_path: Path) -> None:
    assert RunDir.holding(tmp_path / "run" / "checkpoints" / "step-000010.safetensors") == RunDir(tmp_path / "run")
    assert RunDir.holding(tmp_path / "loose" / "step-000010.safetensors") is None  # e.g. export gan-checkpoint --out
    with pytest.raises(ValueError, match="not in a run folder's checkpoints/"):
        RunDir.of_checkpoint(tmp_path / "loose" / "step-000010.safetensors")
