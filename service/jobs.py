"""The worker's two SAQ functions: `chunk_job` computes one chunk of a job (service.chunks) into the result store,
`merge_job` merges a job's chunk files into its result once every chunk is done.

Crash safety: a chunk writes its file atomically and only then reports done, so a worker SIGKILLed mid-chunk
leaves nothing but a re-queued chunk (SAQ's sweep) — the rework is that one chunk. A chunk whose file exists is
not recomputed (an attempt that died after writing but before finishing), and SAQ never re-runs a finished one.
Errors that no retry can fix — the result store full or unwritable, no usable image, a bundle that cannot refine —
fail the whole job at once with their message; anything else is retried (DFI_JOB_RETRIES attempts) and fails the
job on the last attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from saq import Job

from dfi_core.refinement import RefinementUnavailable
from service.chunks import JobSpec, NoUsableImages, merge_invert, merge_metrics, run_chunk
from service.errors import APIError
from service.metrics import WorkerMetrics
from service.queue import MERGE_FUNCTION, JobQueue, merge_key
from service.registry import ModelRegistry
from service.settings import Settings
from service.sources import DecodeLimits, open_source
from service.store import ResultStore, StoreError

log = logging.getLogger("service.worker")
FATAL = (StoreError, NoUsableImages, RefinementUnavailable)
REDIS_PATIENCE_S = 60.0


@contextlib.asynccontextmanager
async def heartbeat(job: Job, interval_s: float, progress: Callable[[], float]) -> AsyncIterator[None]:
    """Touch the job (with its progress) every `interval_s` while the body runs. SAQ sweeps an active job whose
    last touch is older than its heartbeat as dead; the chunk computes in a thread, so the beat is what tells other
    workers this one is alive (start-up, torch import, a long refinement batch)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(Exception):  # a missed beat is retried next interval
                # Shielded: a cancel (DELETE /jobs/{id}) that lands inside the Redis call left the task hanging in
                # redis-py and the job stuck in "aborting"; shielded, the update finishes and the cancel proceeds.
                await asyncio.shield(job.update(progress=round(progress(), 4)))

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def patiently(call: Callable[[], Awaitable[Any]], patience_s: float = REDIS_PATIENCE_S) -> Any:
    """`call()`, retried while Redis is unreachable (restarting) for up to `patience_s`. The chunk's work is done or
    about to be; a Redis restart must not cost it an attempt (issue 19). redis-py's own Retry covers a dead pooled
    connection; this covers a server that is down for seconds."""
    deadline, pause = time.monotonic() + patience_s, 0.2
    while True:
        try:
            return await call()
        except (RedisError, OSError, APIError) as error:
            if isinstance(error, APIError) and error.status != 503:
                raise
            if time.monotonic() + pause > deadline:
                raise
            log.info("redis unavailable (%s); retrying in %.1f s", type(error).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


def _decode_limits(settings: Settings) -> DecodeLimits:
    return DecodeLimits(settings.max_image_bytes, settings.max_image_pixels)


async def _fail_job(ctx: dict[str, Any], job_id: str, message: str) -> None:
    log.warning("job %s failed: %s", job_id, message)
    await ctx["jobs"].finish(job_id, "failed", {"error": message})
    ctx["store"].set_expiry(job_id, time.time() + ctx["settings"].job_result_ttl_s)


async def chunk_job(ctx: dict[str, Any], *, job_id: str, index: int, start: int, stop: int, model: str,
                    source: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    job: Job = ctx["job"]
    jobs: JobQueue = ctx["jobs"]
    metrics: WorkerMetrics = ctx["metrics"]
    keys = jobs.keys(job_id)
    record = await patiently(lambda: jobs.record(job_id))
    if record.get("status", "missing") != "queued":  # cancelled, failed (another chunk's verdict) or expired
        return {"skipped": record.get("status", "missing")}
    size = stop - start
    rows = [0]
    started, outcome = time.monotonic(), "failed"
    try:
        async with heartbeat(job, max(0.5, job.heartbeat / 3), lambda: rows[0] / max(size, 1)):
            await patiently(lambda: jobs.redis.hincrby(keys.record, "runs", 1))
            registry: ModelRegistry = ctx["registry"]
            settings: Settings = ctx["settings"]
            loaded = registry.get(model)
            folder = ctx["store"].folder(job_id)
            job_spec = JobSpec.from_dict(spec)

            def work() -> bool:
                opened = open_source(source, folder, loaded.bundle.manifest.image, _decode_limits(settings))
                return run_chunk(folder, index, (start, stop), opened, loaded, job_spec, ctx.get("torch_threads"),
                                 lambda k: rows.__setitem__(0, rows[0] + k))  # fmt: skip

            computed = await asyncio.to_thread(work)
            metrics.images.inc(size if computed else 0)
            worker = str(ctx["worker"].id)

            async def mark_done() -> int:
                async with jobs.redis.pipeline(transaction=True) as pipe:
                    pipe.sadd(keys.done, index).sadd(keys.workers, worker).scard(keys.done)
                    *_, count = await pipe.execute()
                return int(count)

            # Still inside the heartbeat: while Redis restarts, the beats resume as soon as it is back.
            finished = await patiently(mark_done)
            if finished >= int(record["chunks"]):
                # Every chunk is written: the merge, once (the key is the job's; SAQ refuses a second enqueue).
                merge = jobs._saq_job(MERGE_FUNCTION, merge_key(job_id), {"job_id": job_id})
                await patiently(lambda: jobs.queue.enqueue(merge))
        outcome = "complete"
        return {"index": index, "images": size, "computed": computed, "worker": worker}
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except FATAL as error:
        await _fail_job(ctx, job_id, f"chunk {index}: {getattr(error, 'reason', None) or error}")
        return {"index": index, "failed": str(error)}
    except Exception as error:
        if job.attempts >= job.retries:  # the last attempt: the job fails with this chunk's reason
            await _fail_job(ctx, job_id, f"chunk {index}: {type(error).__name__}: {error}")
        raise
    finally:
        metrics.jobs.labels(outcome).inc()
        metrics.job_seconds.labels(outcome).observe(time.monotonic() - started)


async def merge_job(ctx: dict[str, Any], *, job_id: str) -> dict[str, Any]:
    jobs: JobQueue = ctx["jobs"]
    store: ResultStore = ctx["store"]
    record = await patiently(lambda: jobs.record(job_id))
    if record.get("status") != "queued":
        return {"skipped": record.get("status", "missing")}
    folder = store.folder(job_id)
    settings: Settings = ctx["settings"]
    try:
        plan = folder.read_json(folder.plan)
        if plan["spec"]["kind"] == "invert":
            result = await asyncio.to_thread(merge_invert, folder, plan)
            result["download"] = f"/jobs/{job_id}/result"
        else:
            labelled = plan["source"]["type"] == "split"
            description = (f"{plan['source']['dataset']}/{plan['source']['split']}" if labelled
                           else f"upload ({plan['count']} files)")  # fmt: skip
            loaded = ctx["registry"].get(plan["model"])
            refine = plan["spec"]["refine_steps"] > 0
            extra = {"refine_source": loaded.refinement_generator().source if refine else None,
                     "providers": {g: s.provider for g, s in loaded.graphs.items()}}  # fmt: skip
            names = list(loaded.bundle.manifest.dataset.class_names)
            result = await asyncio.to_thread(merge_metrics, folder, plan, description, float(record["created"]),
                                             labelled, extra, names)  # fmt: skip
    except FATAL as error:
        await _fail_job(ctx, job_id, str(error))
        return {"failed": str(error)}
    await patiently(lambda: jobs.finish(job_id, "complete", {"result": json.dumps(result)}))
    store.set_expiry(job_id, time.time() + settings.job_result_ttl_s)
    return {"merged": len(plan["chunks"])}
