"""`python -m service.worker`: a SAQ worker that runs metric jobs from the Redis queue.

Crash safety comes from SAQ: a job's heartbeat is refreshed at every progress update; when a worker dies (even
SIGKILL) its job goes silent, another worker's sweep (every DFI_WORKER_SWEEP_S) finds it stuck and re-queues it
(up to DFI_JOB_RETRIES attempts, with backoff). SIGTERM stops taking jobs, lets the running one finish within
the grace period, then re-queues it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from prometheus_client import start_http_server
from saq import Worker

from service.jobs import metric_job
from service.metrics import ApiMetrics, WorkerMetrics
from service.queue import JOB_FUNCTION, make_queue, redacted
from service.registry import load_registry
from service.settings import Settings, get_settings

log = logging.getLogger("service.worker")
SHUTDOWN_GRACE_S = 30


def build_worker(settings: Settings) -> Worker:
    if not settings.redis_url:
        raise SystemExit("worker: REDIS_URL is not set (scripts/run.sh starts an embedded Redis and sets it)")
    metrics = WorkerMetrics()

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["registry"] = load_registry(settings, ApiMetrics())
        ctx["metrics"] = metrics
        ctx["torch_threads"] = settings.torch_threads
        if settings.worker_metrics_port:
            start_http_server(settings.worker_metrics_port, registry=metrics.registry)
        log.info("worker %s on %s: models %s", ctx["worker"].id, redacted(settings.redis_url),
                 sorted(ctx["registry"].models))  # fmt: skip

    return Worker(
        make_queue(settings),
        functions=[(JOB_FUNCTION, metric_job)],
        concurrency=settings.worker_concurrency,
        startup=startup,
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
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(build_worker(settings)))


if __name__ == "__main__":
    main()
