"""The metric job (ICLR paper's reconstruction metric): invert n unseen images with the bundle's DFI, optionally
refine (DFI^opt), regenerate, and score — PSNR, SSIM, class-consistency. Runs in the worker.

Deterministic by construction (the first n images of the split, no random draws; refinement starts from ẑ), so a
job retried after its worker died computes the same result as the first attempt would have.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from saq import Job

from dfi_core.datasets import load_split
from dfi_core.metrics import IMAGE_METRICS, class_consistency, latent_norm, score_images, summarize
from dfi_core.preprocessing import to_model_range
from service.metrics import WorkerMetrics
from service.registry import LoadedModel, ModelRegistry

log = logging.getLogger("service.worker")


def encode_images(images: np.ndarray, labels: np.ndarray | None) -> str:
    """[N, H, W, C] uint8 (+ labels) → base64 .npz: how the API hands uploaded images to the worker."""
    buffer = io.BytesIO()
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    np.savez_compressed(buffer, **arrays)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_images(text: str) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as stored:
        return stored["images"], (stored["labels"] if "labels" in stored.files else None)


def _inputs(model: LoadedModel, request: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, str]:
    if request.get("images_npz"):
        images, labels = decode_images(request["images_npz"])
        return images[: request["n"]], None if labels is None else labels[: request["n"]], "upload"
    data = load_split(request["dataset"], request["split"])
    n = min(request["n"], len(data.images))
    return data.images[:n], data.labels[:n], f"{data.name}/{data.split} ({data.source})"


def score_chunk(model: LoadedModel, images: np.ndarray, labels: np.ndarray | None, request: dict[str, Any],
                torch_threads: int | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-image metric values for one chunk (runs in a thread: ONNX Runtime and torch release the GIL)."""
    x = to_model_range(images)
    z = model.graphs["invert"](x)
    if request["refine_steps"]:
        from service.refinement import refine_latents

        # The same G as the API's (dfi_core.refinement.load_bundle_generator): a bundle that cannot refine fails the
        # job with RefinementUnavailable's reason (e.g. the op onnx2torch cannot convert) as its error line.
        z = refine_latents(model.refinement_generator().module, x, z, request["refine_steps"], torch_threads)
    recon = model.graphs["generator"](z)
    asked = request["metrics"]
    out = score_images(recon, x, [metric for metric in asked if metric in IMAGE_METRICS])  # the shared table
    # The two metrics of other inputs: the judge's labels of the reconstructions (uploads carry no true labels,
    # reported as unavailable by the job), and the latents.
    if "class_consistency" in asked and labels is not None:
        out["class_consistency"] = class_consistency(model.graphs["classifier"](recon), labels)
    if "latent_norm" in asked:
        out["latent_norm"] = latent_norm(z)
    return {metric: out[metric] for metric in asked if metric in out}  # the order asked, as the job reports it


@contextlib.asynccontextmanager
async def heartbeat(job: Job, interval_s: float) -> AsyncIterator[None]:
    """Touch the job every `interval_s` while the body runs. SAQ sweeps an active job whose last touch is older
    than its heartbeat as dead; progress updates alone leave gaps (start-up, torch import, a long refinement
    chunk) in which a live worker's job would be swept and re-run."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(Exception):  # a missed beat is retried next interval
                await asyncio.shield(job.update())  # see _update_progress: never cancel a Redis call midway

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def metric_job(ctx: dict[str, Any], **request: Any) -> dict[str, Any]:
    job = ctx["job"]
    async with heartbeat(job, max(0.5, job.heartbeat / 3)):
        return await _metric_job(ctx, job, request)


async def _metric_job(ctx: dict[str, Any], job: Job, request: dict[str, Any]) -> dict[str, Any]:
    registry: ModelRegistry = ctx["registry"]
    metrics: WorkerMetrics = ctx["metrics"]
    started = time.monotonic()
    outcome = "failed"
    try:
        model = registry.get(request["model"])
        images, labels, source = await asyncio.to_thread(_inputs, model, request)
        n, batch = len(images), request["batch_size"]
        values: dict[str, list[np.ndarray]] = {}
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            part_labels = None if labels is None else labels[start:stop]
            part = await asyncio.to_thread(score_chunk, model, images[start:stop], part_labels, request,
                                           ctx.get("torch_threads"))  # fmt: skip
            for key, array in part.items():
                values.setdefault(key, []).append(array)
            metrics.images.inc(stop - start)
            # Each update also touches the job: the heartbeat that tells other workers this one is alive. Shielded: a
            # cancel (DELETE /jobs/{id}) that lands inside the Redis call left the job task hanging in redis-py, and
            # the job stuck in "aborting"; shielded, the update finishes in the background and the cancel proceeds.
            await asyncio.shield(job.update(progress=stop / n, meta={**job.meta, "done": stop, "total": n}))
        result = {
            "model": model.name,
            "n": n,
            "source": source,
            "method": "dfi_opt" if request["refine_steps"] else "dfi",
            "metrics": {key: summarize(np.concatenate(parts)) for key, parts in values.items()},
            "settings": {
                "refine_steps": request["refine_steps"], "refine_method": "adam" if request["refine_steps"] else None,
                "refine_source": model.refinement_generator().source if request["refine_steps"] else None,
                "value_range": [0, 1], "data_range": 1.0, "ssim": "torchmetrics (gaussian 11×11, σ 1.5)",
                "images": "first n of the split", "worker": str(ctx["worker"].id),
                "providers": {g: s.provider for g, s in model.graphs.items()},
            },
            "seconds": round(time.monotonic() - started, 3),
        }  # fmt: skip
        if "class_consistency" in request["metrics"] and labels is None:
            result["unavailable"] = {"class_consistency": "uploaded images carry no labels"}
        outcome = "complete"
        return result
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        metrics.jobs.labels(outcome).inc()
        metrics.job_seconds.labels(outcome).observe(time.monotonic() - started)
