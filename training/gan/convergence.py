"""When has a GAN run converged? Its sample FD, measured at checkpoints during training, is flat (issue 22).

`training.evaluation.samples.SampleFD` scores a generator during training: the Fréchet distance between `n`
samples from a *fixed* set of z (the same at every checkpoint, so the curve moves with G, not with the draw) and the
first `n` real test images, in the penultimate features of the data set's classifier (the zoo's FD at a smaller n).
It lives above this layer (it needs the classifier and the FD); train_gan gets it from its caller. FD is biased
upwards at small n, so these values are comparable along one run only, not with the 10,000-sample FDs of
docs/zoo.md.

The rule (`is_flat`): the run is converged at a checkpoint when the FDs of its last three checkpoints lie within
`tolerance` (relative to their minimum) of each other — the curve has stopped falling and is not swinging. With z
fixed, checkpoint-to-checkpoint changes are G's own; the default 5 % is the size of the z-draw noise of one FD value
at n = 2,000, so a smaller change could not be told from a different draw anyway. Measured on the shipped
Fashion-MNIST SNGAN with six z seeds: 32.76, 31.75, 29.11, 31.76, 30.27, 31.07 (std 1.29, 4 % of the mean;
`python benchmarks/fd_noise.py` → benchmarks/results/fd_noise.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from training.core.plotting import pyplot

FLAT_WINDOW = 3
FLAT_TOLERANCE = 0.05


def is_flat(values: list[float], window: int = FLAT_WINDOW, tolerance: float = FLAT_TOLERANCE) -> bool:
    """True when the last `window` values exist and (max − min) ≤ tolerance · min."""
    if len(values) < window:
        return False
    last = values[-window:]
    return max(last) - min(last) <= tolerance * min(last)


class GeneratorScore(Protocol):
    """What the training loop calls to score G at a checkpoint: `n` samples' FD (training.evaluation.samples.SampleFD;
    built above this layer, since it needs the data set's classifier and the FD, and passed in by the caller)."""

    n: int

    def __call__(self, G: torch.nn.Module) -> float: ...


class FDCurve:
    """`fd.jsonl` in the run folder (one record per scored checkpoint, appended, so a resumed run continues the
    curve) and `fd_curve.png` redrawn after each record."""

    def __init__(self, run_path: Path) -> None:
        self.path = run_path / "fd.jsonl"
        self.plot_path = run_path / "fd_curve.png"

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resume from an earlier checkpoint re-scores those steps)."""
        kept = [r for r in self.records() if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def add(self, record: dict[str, Any], key: str = "fd") -> dict[str, Any]:
        values = [r[key] for r in self.records()] + [record[key]]
        record = {**record, "converged": is_flat(values)}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.plot()
        return record

    def plot(self) -> None:
        records = self.records()
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        steps = [r["step"] for r in records]
        for key, label in (("fd", "G used for samples / DFI"), ("fd_raw", "raw G (no EMA)")):
            if any(key in r for r in records):
                ax.plot(steps, [r.get(key, np.nan) for r in records], marker="o", label=label)
        flat = [r["step"] for r in records if r.get("converged")]
        if flat:
            ax.axvline(flat[0], color="grey", linestyle=":", label=f"flat from step {flat[0]}")
        n = records[-1].get("n") if records else None
        ax.set(xlabel="generator step", ylabel=f"sample FD (n = {n})", title="sample FD along training")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=110)
        plt.close(fig)
