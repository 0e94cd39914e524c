"""Run folders (stylegan3-style, numbered): one type, `RunDir`, names every file a run writes or a reader opens.

    RUN/command.txt                   the resolved command line (written by `training.cli.common.start_run`)
    RUN/config.json                   the run's config (`to_dict`), written once
    RUN/log.jsonl                     one JSON record per logged step (`RunLog`)
    RUN/metrics.json                  test scores of the classifier runs
    RUN/samples/                      picture grids during training
    RUN/checkpoints/step-NNNNNN.safetensors   numbered checkpoints of resumable runs (GAN, cyclic)
    RUN/<kind>.safetensors            the final weights of the other kinds (`FINAL_WEIGHTS`)

The file names are the ones shipped manifests, docs and scripts already name; they must not change.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.core.config import to_dict

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
COMMAND_FILE = "command.txt"
METRICS_FILE = "metrics.json"
SAMPLE_FD_FILE = "sample_fd.json"  # `evaluate samples` of a GAN run's checkpoint
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_GLOB = "step-*.safetensors"

# config kind → where its final weights are, relative to the run folder. A glob means "the last of the numbered
# checkpoints": GAN and cyclic runs keep (and prune) step-NNNNNN files so that they can be resumed.
FINAL_WEIGHTS: dict[str, str] = {
    "gan": f"{CHECKPOINTS_DIR}/{CHECKPOINT_GLOB}",
    "cyclic": f"{CHECKPOINTS_DIR}/{CHECKPOINT_GLOB}",
    "inverter": "inverter.safetensors",
    "classifier": "classifier.safetensors",
    "attributes": "attributes.safetensors",
    "scgan": "scgan.safetensors",
}


def next_run_dir(root: str | Path, description: str) -> Path:
    """stylegan3-style numbered run folder: runs/00003-fashion-mnist-wgan-gp."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids = [int(p.name.split("-", 1)[0]) for p in root.iterdir() if p.is_dir() and p.name[:5].isdigit()]
    run_dir = root / f"{max(ids, default=-1) + 1:05d}-{description}"
    run_dir.mkdir()
    return run_dir


class RunLog:
    """Appends one JSON object per line to log.jsonl (losses, timing) — easy to plot and to tail."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every record, in order; [] when nothing was logged yet."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]


def _json_ready(config: Any) -> dict[str, Any]:
    """The config as config.json holds it (tuples as lists), so a fresh config compares equal to a read one."""
    return json.loads(json.dumps(to_dict(config)))


@dataclass(frozen=True, order=True)
class RunDir:
    """One run folder (ordered by path). Paths are fields derived from `path`; nothing is created until a
    `write_*`, `log` or `mkdir` asks for it."""

    path: Path
    # The fixed parts of every run folder (set in __post_init__ from the names above; not constructor arguments).
    config_path: Path = field(init=False, compare=False, repr=False)
    log_path: Path = field(init=False, compare=False, repr=False)
    command_path: Path = field(init=False, compare=False, repr=False)
    sample_fd_path: Path = field(init=False, compare=False, repr=False)
    metrics_path: Path = field(init=False, compare=False, repr=False)  # a classifier run's final test scores
    samples: Path = field(init=False, compare=False, repr=False)
    checkpoints: Path = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        path = Path(self.path)
        parts = {"path": path, "config_path": path / CONFIG_FILE, "log_path": path / LOG_FILE,
                 "command_path": path / COMMAND_FILE, "sample_fd_path": path / SAMPLE_FD_FILE,
                 "metrics_path": path / METRICS_FILE, "samples": path / SAMPLES_DIR,
                 "checkpoints": path / CHECKPOINTS_DIR}  # fmt: skip
        for name, value in parts.items():
            object.__setattr__(self, name, value)  # frozen dataclass: the documented way to set derived fields

    @classmethod
    def create(cls, root: str | Path, description: str) -> RunDir:
        """A new numbered folder under `root` (`next_run_dir`)."""
        return cls(next_run_dir(root, description))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir:
        """The run folder holding `checkpoint` — RUN/checkpoints/step-NNNNNN.safetensors (GAN and cyclic runs)."""
        run = cls.holding(checkpoint)
        if run is None:
            raise ValueError(f"{checkpoint} is not in a run folder's {CHECKPOINTS_DIR}/")
        return run

    @classmethod
    def holding(cls, checkpoint: str | Path) -> RunDir | None:
        """`of_checkpoint`, or None for a checkpoint kept outside a run folder (e.g. `export gan-checkpoint --out`)."""
        checkpoint = Path(checkpoint)
        return cls(checkpoint.parent.parent) if checkpoint.parent.name == CHECKPOINTS_DIR else None

    @property
    def name(self) -> str:
        return self.path.name

    def mkdir(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # --- config.json: written once -------------------------------------------------------------------------------

    def _existing_config(self) -> dict[str, Any] | None:
        if not self.config_path.is_file():
            return None
        try:
            return json.loads(self.config_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.config_path} is not valid JSON ({error}); use another run folder") from None

    def check_config(self, config: Any, may_change: Collection[str] = ()) -> None:
        """Raise ValueError if config.json already holds a config that differs from `config` in a field outside
        `may_change`: a run folder describes one run. A resume passes `may_change=("steps",)` because it may
        extend the run (`train gan --resume ... --steps`), which rewrites `steps` and nothing else."""
        old, new = self._existing_config(), _json_ready(config)
        if old is None:
            return
        differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in may_change)
        if differing:
            raise ValueError(
                f"{self.config_path} holds the config of another run (differs in {', '.join(differing)}); "
                "use a new run folder or delete this one"
            )

    def write_config(self, config: Any, may_change: Collection[str] = ()) -> Path:
        """Write config.json (the config's `to_dict`, indent 2) once: after `check_config`, so the identical config
        again (a rerun, a resume) is accepted and left as it is, a resume's new `steps` is written, and any other
        difference raises."""
        self.check_config(config, may_change)
        if self._existing_config() != _json_ready(config):
            self.mkdir()
            self.config_path.write_text(json.dumps(to_dict(config), indent=2))
        return self.config_path

    def read_config(self) -> dict[str, Any]:
        """config.json as a dict (rebuild the typed config with `training.core.config.config_from_dict`)."""
        return json.loads(self.config_path.read_text())

    # --- log.jsonl, command.txt ------------------------------------------------------------------------------------

    def log(self, fresh: bool = False) -> RunLog:
        """The run's log. Records append (a resumed run continues its log); `fresh` empties it first, for runs
        that cannot resume and replace their log when retrained in the same folder (the attribute classifier)."""
        self.mkdir()
        if fresh:
            self.log_path.write_text("")
        return RunLog(self.log_path)

    def read_log(self) -> list[dict[str, Any]]:
        return RunLog(self.log_path).read()

    def write_command(self, text: str) -> Path:
        self.mkdir()
        self.command_path.write_text(text if text.endswith("\n") else text + "\n")
        return self.command_path

    def read_command(self) -> str:
        """The recorded command line, stripped; FileNotFoundError if the run has none."""
        return self.command_path.read_text().strip()

    # --- weights -------------------------------------------------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:06d}.safetensors"

    def checkpoint_files(self) -> list[Path]:
        """The numbered checkpoints, oldest first (six-digit steps sort by name)."""
        return sorted(self.checkpoints.glob(CHECKPOINT_GLOB))

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the newest `keep` numbered checkpoints (keep = 0 deletes none: the slice [:-0] is empty)."""
        for old in self.checkpoint_files()[:-keep]:
            old.unlink()

    def latest_checkpoint(self) -> Path:
        found = self.checkpoint_files()
        if not found:
            raise FileNotFoundError(f"no checkpoints in {self.checkpoints}")
        return found[-1]

    def final_weights(self, kind: str) -> Path:
        """Where a run of config kind `kind` keeps its final weights (`FINAL_WEIGHTS`); for the kinds with
        numbered checkpoints, the latest one (FileNotFoundError if there is none)."""
        if kind not in FINAL_WEIGHTS:
            raise ValueError(f"unknown run kind {kind!r}; known: {sorted(FINAL_WEIGHTS)}")
        name = FINAL_WEIGHTS[kind]
        return self.latest_checkpoint() if name == f"{CHECKPOINTS_DIR}/{CHECKPOINT_GLOB}" else self.path / name
