"""`python -m service.worker`: a SAQ worker that runs job chunks (and merges) from the Redis queue. Start as many
as you like, on as many machines as share the Redis and the result store (DFI_RESULTS_DIR): each takes any chunk.

Crash safety comes from SAQ: a chunk's heartbeat is refreshed every few seconds while it runs; when a worker dies
(even SIGKILL) its chunk goes silent, another worker's sweep (every DFI_WORKER_SWEEP_S) finds it stuck and
re-queues it (up to DFI_JOB_RETRIES attempts, with backoff). SIGTERM stops taking chunks, lets the running one
finish within the grace period, then re-queues it. Every DFI_STORE_SWEEP_S the worker also removes expired jobs
from the result store.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import saq
from prometheus_client import start_http_server

from service.jobs import chunk_job, merge_job
from service.metrics import ApiMetrics, WorkerMetrics
from service.queue import CHUNK_FUNCTION, MERGE_FUNCTION, JobQueue, redacted
from service.registry import load_registry
from service.settings import Settings, get_settings
from service.store import ResultStore

log = logging.getLogger("service.worker")
SHUTDOWN_GRACE_S = 30


class Worker(saq.Worker):
    """SAQ's worker, stopping promptly: on SIGTERM SAQ waits for every task to return, its upkeep timers (the
    sweep, every DFI_WORKER_SWEEP_S) included, and they notice the stop only after their next sleep — an idle
    worker took ~8.5 s to exit. The timers are cancelled at once (a sweep is idempotent Redis work; the next
    worker's sweep does it again); the running chunk still gets SHUTDOWN_GRACE_S to finish."""

    async def upkeep(self) -> list[asyncio.Task]:
        self._upkeep_tasks = await super().upkeep()
        return self._upkeep_tasks

    async def stop(self) -> None:
        for task in getattr(self, "_upkeep_tasks", []):
            task.cancel()
        await super().stop()


def build_worker(settings: Settings) -> Worker:
    if not settings.redis_url:
        raise SystemExit("worker: REDIS_URL is not set (scripts/run.sh starts an embedded Redis and sets it)")
    metrics = WorkerMetrics()
    jobs = JobQueue(settings, patient=True)  # the worker's SAQ queue; records and merges use the same client
    store = ResultStore(settings.results_dir)

    async def sweep_store() -> None:
        while True:
            try:
                removed = await asyncio.to_thread(store.sweep)
                if removed:
                    log.info("result store: removed %d expired job(s)", len(removed))
            except OSError as error:  # a store that is briefly unreachable: try again next time
                log.warning("result store sweep failed: %s", error)
            await asyncio.sleep(settings.store_sweep_s)

    async def repair_jobs() -> None:
        # Silent for two heartbeats and in no SAQ list: lost or orphaned (JobQueue.repair says how).
        stale_s = 2 * settings.job_heartbeat_s
        while True:
            await asyncio.sleep(settings.worker_sweep_s)
            try:
                for line in await jobs.repair(stale_s, settings.worker_sweep_s):
                    log.warning("repair: %s", line)
            except Exception as error:  # Redis down or restarting: the next round tries again
                log.info("repair skipped: %s", type(error).__name__)

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["registry"] = load_registry(settings, ApiMetrics())
        ctx.update(metrics=metrics, jobs=jobs, store=store, settings=settings, torch_threads=settings.torch_threads)
        ctx["store_sweeper"] = asyncio.create_task(sweep_store())
        ctx["repairer"] = asyncio.create_task(repair_jobs())
        if settings.worker_metrics_port:
            start_http_server(settings.worker_metrics_port, settings.worker_metrics_host, registry=metrics.registry)
        log.info("worker %s on %s: models %s, results in %s", ctx["worker"].id, redacted(settings.redis_url),
                 sorted(ctx["registry"].models), settings.results_dir)  # fmt: skip

    async def shutdown(ctx: dict[str, Any]) -> None:
        for task in ("store_sweeper", "repairer"):
            if task in ctx:
                ctx[task].cancel()

    assert jobs.queue is not None
    return Worker(
        jobs.queue,
        functions=[(CHUNK_FUNCTION, chunk_job), (MERGE_FUNCTION, merge_job)],
        concurrency=settings.worker_concurrency,
        startup=startup,
        shutdown=shutdown,
        timers={"sweep": settings.worker_sweep_s},
        shutdown_grace_period_s=SHUTDOWN_GRACE_S,
        id=f"{os.uname().nodename}-{os.getpid()}",
    )


async def _run(worker: Worker) -> None:
    await worker.queue.connect()
    try:
        await worker.start()
    finally:
        await worker.queue.disconnect()


def main() -> None:
    from service.__main__ import exit_on_bad_settings  # one line per bad setting and exit 2, as `python -m service`

    with exit_on_bad_settings():
        settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(build_worker(settings)))


if __name__ == "__main__":
    main()
