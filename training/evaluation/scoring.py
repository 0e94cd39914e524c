"""The one scoring loop of the training package: per-image metric values accumulated over batches, summarised in
the one format of `dfi_core.metrics.summarize`, {"mean", "std", "n"}.

Every reconstruction score of training/ goes through `Scores`: `score_inversion` (bundle manifests, docs/dfi.md),
`score_repeats` (`evaluate bundle`, `evaluate inverters`, the cyclic baselines), `evaluate_reconstruction`
(`evaluate reconstruction`) and the SCGAN evaluation. The metrics themselves are `dfi_core.metrics`' — the table
the service's metric jobs use too — so a number here and a job's number are the same computation: images in
[-1, 1] mapped to [0, 1] (clipped), data_range 1, PSNR/MSE in float64, torchmetrics SSIM (11×11 Gaussian window).

Files that predate the one format keep their schemas through `flatten` at the point they are written (the bundle
manifest's `metrics`, docs/dfi/*-scores.json, reconstruction.json).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from dfi_core import metrics

Summary = dict[str, Any]  # {"mean": float, "std": float, "n": int}
SUMMARY_KEYS = frozenset({"mean", "std", "n"})


def as_numpy(values: Any) -> np.ndarray:
    """A torch tensor (any device, grad or not) or an array → a numpy array on the CPU."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


class Scores:
    """Per-image values of named metrics, appended batch by batch; `summary()` gives each one's summary.

    `image_metrics` (names of `dfi_core.metrics.IMAGE_METRICS`) are computed by `add_images` on every batch;
    the metrics of other inputs (class-consistency: a judge's logits and true labels) and values computed
    elsewhere go in through `add_class_consistency` and `add`. Keys keep the order of first arrival."""

    def __init__(self, image_metrics: Sequence[str] = ()) -> None:
        self.image_metrics = tuple(image_metrics)
        self._parts: dict[str, list[np.ndarray]] = {}

    def add(self, name: str, values: Any) -> None:
        self._parts.setdefault(name, []).append(as_numpy(values).astype(np.float64).reshape(-1))

    def add_images(self, reconstructions: Any, targets: Any) -> None:
        """Images [N, C, H, W] in [-1, 1] (torch or numpy): each of `image_metrics`, per image."""
        scored = metrics.score_images(as_numpy(reconstructions), as_numpy(targets), self.image_metrics)
        for name, values in scored.items():
            self.add(name, values)

    def add_class_consistency(self, logits: Any, labels: Any) -> None:
        self.add("class_consistency", metrics.class_consistency(as_numpy(logits), as_numpy(labels)))

    def values(self, name: str) -> np.ndarray:
        """All per-image values of `name` so far, in the order added."""
        return np.concatenate(self._parts[name])

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def summary(self) -> dict[str, Summary]:
        """name → {"mean", "std" (n − 1), "n"} over every image added."""
        return {name: metrics.summarize(self.values(name)) for name in self._parts}


Reconstructor = Callable[[np.ndarray, int], np.ndarray]  # (x [B, C, H, W] in [-1, 1], offset of x[0]) → G(ẑ)


def score_reconstructions(
    reconstruct: Reconstructor,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    judge: Callable[[np.ndarray], np.ndarray] | None = None,
    image_metrics: Sequence[str] = ("psnr", "ssim", "ms_ssim"),
    batch: int = 250,
    offset: int = 0,
) -> tuple[Scores, np.ndarray]:
    """Reconstruct `images` (model range) batch by batch and score each batch; with `judge` (images → logits)
    and `labels`, class-consistency too. `offset` is images[0]'s index in its split, passed on to `reconstruct`
    (plus the batch start) as a seed offset for random starts. Returns the scores and every reconstruction."""
    scores, outputs = Scores(image_metrics), []
    for start in range(0, len(images), batch):
        x = images[start : start + batch]
        out = reconstruct(x, offset + start)
        outputs.append(out)
        scores.add_images(out, x)
        if judge is not None and labels is not None:
            scores.add_class_consistency(judge(out), labels[start : start + len(x)])
    return scores, np.concatenate(outputs)


def is_summary(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == SUMMARY_KEYS


def flatten(
    result: dict[str, Any], mean: str = "{}", std: str = "{}_std", stds: Collection[str] | None = None
) -> dict[str, Any]:
    """The flat schema of the files written before the one format: each summary under `name` becomes
    `mean.format(name)` and, when `stds` is None or names it, `std.format(name)` (its "n" is dropped — those files
    carry one "n" or "test_images" of their own); nested dicts are flattened alike, other values kept."""
    out: dict[str, Any] = {}
    for name, value in result.items():
        if is_summary(value):
            out[mean.format(name)] = value["mean"]
            if stds is None or name in stds:
                out[std.format(name)] = value["std"]
        elif isinstance(value, dict):
            out[name] = flatten(value, mean, std, stds)
        else:
            out[name] = value
    return out
