"""One job = a plan of chunks; one chunk = a fixed slice [start, stop) of the job's input order, computed by
whichever worker takes it (or by the offline twin, `python -m service.batch`), written as one file; the job's
result = the chunk files merged in order. The worker and the offline twin share every line of this module, so
the same input gives the same bytes by either path.

Determinism: a chunk's images, batches (`batch_size` rows from the chunk's start) and refinement start (ẑ) are
fixed by the plan, never by which worker runs it or how many there are, so a re-run chunk writes what the first
attempt would have, and the merged result is byte-identical for 1 or N workers (store.npz_bytes fixes the zip
bytes too). Metric jobs keep per-image values per chunk and summarise the concatenation: exactly the numbers of
a one-worker run, not an approximation from per-chunk sums. A `per_class` job's chunks also keep each image's
label and the classifier's logits of the real image and of its reconstruction, so its per-class summaries and
per-class FDs (dfi_core.per_class) are computed from the same concatenation: exact whatever the chunking.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from dfi_core.metrics import IMAGE_METRICS, class_consistency, latent_norm, score_images, summarize
from dfi_core.per_class import per_class_report
from dfi_core.preprocessing import to_model_range, to_uint8
from service.errors import APIError
from service.registry import LoadedModel
from service.sources import Batch, Source, per_class_refusal, split_class_names
from service.store import JobFolder, npz_bytes, read_npz, write_atomic

Kind = Literal["invert", "metrics"]
METRIC_PREFIX = "metric."
# per_class chunks: true labels, and the classifier's logits of the inputs / reconstructions (the FD features).
LABELS, REAL_LOGITS, FAKE_LOGITS = "per_class.labels", "per_class.real_logits", "per_class.fake_logits"
FD_FEATURES = "classifier.onnx logits"
PLAN_VERSION = 1


class NoUsableImages(Exception):
    """Every input was skipped: the job fails with this message (never retried: the input will not change)."""


@dataclass(frozen=True)
class JobSpec:
    """What every chunk of one job computes (JSON in each chunk's SAQ kwargs and in plan.json)."""

    kind: Kind
    refine_steps: int = 0
    batch_size: int = 250
    metrics: tuple[str, ...] = ()
    return_reconstructions: bool = False
    per_class: bool = False  # metrics per true label + the flag rule (split sources only); absent in older plans

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobSpec:
        return cls(**{**values, "metrics": tuple(values.get("metrics", ()))})

    def to_dict(self) -> dict[str, Any]:
        values = {**asdict(self), "metrics": list(self.metrics)}
        if not self.per_class:  # plans without it stay as before (the offline twin resumes only into equal plans)
            del values["per_class"]
        return values


def chunk_images(base: int, refine_steps: int) -> int:
    """Images per chunk: `base` (DFI_JOB_CHUNK_IMAGES) for plain inversion; with refinement each image costs about
    refine_steps forward-backward passes of G instead of one forward, so chunks shrink to keep a chunk seconds of
    work (and the rework after a killed worker small): base × 10 / (10 + steps), at least 16."""
    return max(16, base * 10 // (10 + refine_steps))


def plan_chunks(count: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def make_plan(spec: JobSpec, model: LoadedModel, source: dict[str, Any], count: int, size: int) -> dict[str, Any]:
    """plan.json: what the chunk files of a folder are. The offline twin resumes only into a folder whose plan is
    this one (same bundle bytes, input, spec and chunking) — chunks of another plan are never mixed in."""
    refusal = per_class_refusal(source) if spec.per_class else None
    if refusal:
        raise APIError(422, refusal)
    manifest = model.bundle.manifest
    files = sorted(manifest.files.items())  # relative path → sha256
    return {
        "version": PLAN_VERSION,
        "model": model.name,
        "model_sha256": hashlib.sha256(repr(files).encode()).hexdigest(),
        "source": source,
        "spec": spec.to_dict(),
        "count": count,
        "chunks": [list(bounds) for bounds in plan_chunks(count, size)],
    }


def compute_chunk(model: LoadedModel, batch: Batch, spec: JobSpec, torch_threads: int | None = None,
                  on_rows: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """The arrays of one chunk file: names [k], errors [m, 2], then z [k, |z|] float32 and reconstructions
    [k, H, W, C] uint8 (invert), or one float64 [k] array per metric (metrics). Runs in a thread: ONNX Runtime
    and torch release the GIL."""
    k = len(batch.names)
    z_dim = model.bundle.manifest.latent.size
    latents, recons, values = [], [], {}
    judge = model.graphs.get("classifier")
    if spec.per_class and batch.labels is None:  # make_plan refuses such jobs; a hand-made plan must not slip by
        raise ValueError("per_class needs true labels; this chunk's source has none")
    for begin in range(0, k, spec.batch_size):
        end = min(begin + spec.batch_size, k)
        x = to_model_range(batch.images[begin:end])  # [B, C, H, W] float32, [-1, +1]
        z = model.graphs["invert"](x)
        if spec.refine_steps:
            from service.refinement import refine_latents

            # The same G as the API's (dfi_core.refinement.load_bundle_generator): a bundle that cannot refine
            # raises RefinementUnavailable, whose reason becomes the job's error line.
            z = refine_latents(model.refinement_generator().module, x, z, spec.refine_steps, torch_threads)
        z = np.ascontiguousarray(z, dtype=np.float32)
        if spec.kind == "invert":
            latents.append(z)
            if spec.return_reconstructions:
                recons.append(to_uint8(model.graphs["generator"](z)))
        else:
            recon = model.graphs["generator"](z)
            labels = None if batch.labels is None else batch.labels[begin:end]
            logits = judge(recon) if judge is not None and (spec.per_class or "class_consistency" in spec.metrics) \
                else None  # fmt: skip
            for name, array in _score(model, recon, x, z, labels, spec.metrics, logits).items():
                values.setdefault(name, []).append(array)
            if spec.per_class:
                values.setdefault(LABELS, []).append(np.asarray(labels, np.int64))
                if judge is not None:
                    values.setdefault(REAL_LOGITS, []).append(np.asarray(judge(x), np.float32))
                    values.setdefault(FAKE_LOGITS, []).append(np.asarray(logits, np.float32))
        if on_rows is not None:
            on_rows(end - begin)
    arrays: dict[str, np.ndarray] = {
        "names": np.array(batch.names, dtype=str),
        "errors": np.array(batch.errors, dtype=str).reshape(len(batch.errors), 2),
    }
    if spec.kind == "invert":
        arrays["z"] = np.concatenate(latents) if latents else np.zeros((0, z_dim), np.float32)
        if spec.return_reconstructions:
            image = model.bundle.manifest.image
            empty = np.zeros((0, image.height, image.width, image.channels), np.uint8)
            arrays["reconstructions"] = np.concatenate(recons) if recons else empty
    else:
        # Every chunk of a source has the same keys (class_consistency needs true labels: splits only).
        for name in spec.metrics:
            if name != "class_consistency" or batch.labels is not None:
                parts = values.get(name, [])
                arrays[METRIC_PREFIX + name] = np.concatenate(parts) if parts else np.zeros(0, np.float64)
        if spec.per_class:
            arrays[LABELS] = np.concatenate(values[LABELS]) if LABELS in values else np.zeros(0, np.int64)
            if judge is not None:
                classes = len(model.bundle.manifest.dataset.class_names)
                for key in (REAL_LOGITS, FAKE_LOGITS):
                    arrays[key] = np.concatenate(values[key]) if key in values else np.zeros((0, classes), np.float32)
    return arrays


def _score(model: LoadedModel, recon: np.ndarray, x: np.ndarray, z: np.ndarray, labels: np.ndarray | None,
           asked: tuple[str, ...], logits: np.ndarray | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    out = score_images(recon, x, [metric for metric in asked if metric in IMAGE_METRICS])  # the shared table
    # The two metrics of other inputs: the judge's labels of the reconstructions (uploads carry no true labels,
    # reported as unavailable by the job), and the latents.
    if "class_consistency" in asked and labels is not None:
        out["class_consistency"] = class_consistency(
            model.graphs["classifier"](recon) if logits is None else logits, labels
        )
    if "latent_norm" in asked:
        out["latent_norm"] = latent_norm(z)
    return out


def run_chunk(folder: JobFolder, index: int, bounds: tuple[int, int], source: Source, model: LoadedModel,
              spec: JobSpec, torch_threads: int | None = None,
              on_rows: Callable[[int], None] | None = None) -> bool:  # fmt: skip
    """Compute and write chunk `index` unless its file exists (a finished chunk is never redone). True if it
    computed."""
    if folder.has_chunk(index):
        return False
    batch = source.read(*bounds)
    folder.write_chunk(index, compute_chunk(model, batch, spec, torch_threads, on_rows))
    return True


def _merged(folder: JobFolder, plan: dict[str, Any]) -> dict[str, np.ndarray]:
    parts = [read_npz(folder.chunk(i)) for i in range(len(plan["chunks"]))]
    skipped = []
    if folder.members.is_file():  # members refused at upload time but kept as errors (links in a tar)
        skipped = [tuple(pair) for pair in folder.read_json(folder.members).get("skipped", [])]
    errors = sorted([*skipped, *(tuple(row) for part in parts for row in part["errors"].tolist())])
    merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0] if key != "errors"}
    merged["errors"] = np.array(errors, dtype=str).reshape(len(errors), 2)
    return merged


def _no_usable(merged: dict[str, np.ndarray]) -> NoUsableImages:
    errors = merged["errors"]
    examples = "; ".join(f"{name}: {why}" for name, why in errors[:3].tolist())
    return NoUsableImages(f"archive: no usable image ({len(errors)} files skipped: {examples})")


def merge_invert(folder: JobFolder, plan: dict[str, Any]) -> dict[str, Any]:
    """Write result.npz (z, names, errors, reconstructions if asked) and return its summary."""
    merged = _merged(folder, plan)
    if len(merged["names"]) == 0:
        raise _no_usable(merged)
    order = ["z", "names", "errors", *(["reconstructions"] if "reconstructions" in merged else [])]
    data = npz_bytes({key: merged[key] for key in order})
    write_atomic(folder.result, data)
    return {
        "n": int(len(merged["names"])),
        "skipped": int(len(merged["errors"])),
        "errors": dict(merged["errors"].tolist()),
        "z_shape": list(merged["z"].shape),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def merge_metrics(folder: JobFolder, plan: dict[str, Any], description: str, started: float | None = None,
                  labelled: bool = True, settings: dict[str, Any] | None = None,
                  class_names: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The metric job's JSON result (the same keys as before chunking), from every chunk's per-image values; with
    `per_class`, also `per_class` (dfi_core.per_class.per_class_report: per-class summaries, FD at one n per
    class in the classifier's logits, the flag rule and the flagged classes). `class_names`: the bundle's
    (dataset.class_names), else the split's own."""
    merged = _merged(folder, plan)
    if len(merged["names"]) == 0:
        raise _no_usable(merged)
    spec = JobSpec.from_dict(plan["spec"])
    result: dict[str, Any] = {
        "model": plan["model"],
        "n": int(len(merged["names"])),
        "source": description,
        "method": "dfi_opt" if spec.refine_steps else "dfi",
        "metrics": {
            name: summarize(merged[METRIC_PREFIX + name]) for name in spec.metrics if METRIC_PREFIX + name in merged
        },
        "settings": {
            "refine_steps": spec.refine_steps,
            "refine_method": "adam" if spec.refine_steps else None,
            "value_range": [0, 1],
            "data_range": 1.0,
            "ssim": "torchmetrics (gaussian 11×11, σ 1.5)",
            "images": "first n of the split" if plan["source"]["type"] == "split" else "every image of the upload",
            "chunks": len(plan["chunks"]),
            "batch_size": spec.batch_size,
            **(settings or {}),
        },
    }
    if started is not None:
        result["seconds"] = round(time.time() - started, 3)
    if len(merged["errors"]):
        result["errors"] = dict(merged["errors"].tolist())
    if spec.per_class:
        result["per_class"] = _per_class(merged, spec, plan, class_names)
    if "class_consistency" in spec.metrics and not labelled:
        result["unavailable"] = {"class_consistency": "uploaded images carry no labels"}
    return result


def _per_class(merged: dict[str, np.ndarray], spec: JobSpec, plan: dict[str, Any],
               class_names: list[str] | None) -> dict[str, Any]:  # fmt: skip
    if not class_names:
        class_names = split_class_names(plan["source"]["dataset"], plan["source"]["split"])
    values = {name: merged[METRIC_PREFIX + name] for name in spec.metrics if METRIC_PREFIX + name in merged}
    real, fake = merged.get(REAL_LOGITS), merged.get(FAKE_LOGITS)
    return per_class_report(values, merged[LABELS], class_names, real, fake,
                            fd_features=FD_FEATURES if real is not None else None)  # fmt: skip
