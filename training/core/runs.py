"""Run folders (stylegan3-style, numbered) and their JSON-lines logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
