"""The metric-job queue: SAQ on Redis (heartbeats, retries with backoff, progress, result TTL — no hand-written
queue). The API enqueues and reads jobs; `python -m service.worker` runs them.

Redis being down never takes the API down: job routes answer 503 naming the Redis URL, `/readyz` reports it and
/invert, /edit, /outpaint keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.exceptions import RedisError
from saq import Job, Queue
from saq.job import Status
from saq.queue.redis import RedisQueue

from service.errors import APIError
from service.settings import Settings

log = logging.getLogger("service")
JOB_FUNCTION = "metric_job"
REDIS_TIMEOUT_S = 2.0


def redacted(url: str | None) -> str:
    """The Redis URL without its password, for messages and logs."""
    if not url:
        return "(none)"
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class SweepSafeRedisQueue(RedisQueue):
    """SAQ's RedisQueue with one race closed (saq issues #124 and #277, open in 0.26): a worker's dequeue moves a
    job id to the active list *before* it marks the job ACTIVE, and a sweep that reads the list in between takes
    the still-QUEUED job for an orphan and aborts it — a fresh job lost at worker start-up. Here a non-ACTIVE job
    found in the active list is re-read after `DEQUEUE_GRACE_S`, and swept only if it is still not ACTIVE."""

    DEQUEUE_GRACE_S = 1.0

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        # SAQ's sweep (queue/redis.py) with the grace re-read; the same lock key keeps one sweeper at a time.
        if not await self.redis.set(self._sweep, 1, ex=lock, nx=True):
            return []
        ids = await self.redis.lrange(self._active, 0, -1)
        jobs = [self.deserialize(p) if p else None for p in (await self.redis.mget(ids) if ids else [])]
        swept: list[str] = []
        unsure = []
        for job_id, job in zip(ids, jobs, strict=True):
            if job is None:  # the id outlived its job: drop it, as SAQ does
                await self.redis.lrem(self._active, 0, job_id)
                await self.redis.zrem(self._incomplete, job_id)
                swept.append(job_id.decode())
            elif job.status not in (Status.ACTIVE, Status.ABORTING):
                unsure.append(job)
            elif job.stuck:
                await self._sweep_job(job, abort)
                swept.append(job.id)
        if unsure:
            await asyncio.sleep(self.DEQUEUE_GRACE_S)
            for job in unsure:
                fresh = await self.job(job.key)
                still_active_list = job.id.encode() in await self.redis.lrange(self._active, 0, -1)
                if fresh is not None and fresh.status not in (Status.ACTIVE, Status.ABORTING) and still_active_list:
                    await self._sweep_job(fresh, abort)
                    swept.append(fresh.id)
        return swept

    async def _sweep_job(self, job: Job, abort: float) -> None:
        log.info("sweeping %s (status %s, last touched %s)", job.key, job.status.value, job.touched)
        await self.abort(job, error=self.swept_error_message)
        with contextlib.suppress(TimeoutError):
            await job.refresh(abort)
        if job.retryable:
            await self.retry(job, error=self.swept_error_message)
        else:
            await self.finish(job, Status.ABORTED, error=self.swept_error_message)


def make_queue(settings: Settings) -> Queue:
    # Our own client so that a dead Redis fails within REDIS_TIMEOUT_S instead of hanging a request.
    client = aioredis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT_S,
                               socket_connect_timeout=REDIS_TIMEOUT_S)  # fmt: skip
    return SweepSafeRedisQueue(client, name=settings.queue_name)


class JobQueue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue: Queue | None = make_queue(settings) if settings.redis_url else None

    def _unavailable(self, why: str) -> APIError:
        return APIError(503, f"job queue unavailable: {why}; /invert, /edit and /outpaint still work")

    def _require(self) -> Queue:
        if self.queue is None:
            raise self._unavailable("no REDIS_URL configured")
        return self.queue

    async def connect(self) -> None:
        """Best effort: a Redis that is down at start-up must not stop the API (it is retried per request)."""
        if self.queue is None:
            return
        try:
            await asyncio.wait_for(self.queue.connect(), REDIS_TIMEOUT_S * 2)
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("job queue: redis at %s unreachable at start-up (%s); job routes answer 503 until it is back",
                        redacted(self.settings.redis_url), type(error).__name__)  # fmt: skip

    async def close(self) -> None:
        if self.queue is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):  # shutting down: nothing to flush
                await asyncio.wait_for(self.queue.disconnect(), REDIS_TIMEOUT_S * 2)

    async def ping(self) -> tuple[bool, str]:
        if self.queue is None:
            return False, "no REDIS_URL configured"
        try:
            await asyncio.wait_for(self.queue.redis.ping(), REDIS_TIMEOUT_S)  # type: ignore[attr-defined]
            return True, f"redis at {redacted(self.settings.redis_url)} answers"
        except (RedisError, OSError, TimeoutError) as error:
            return False, f"redis at {redacted(self.settings.redis_url)} unreachable ({type(error).__name__})"

    async def _call(self, coroutine: Any) -> Any:
        try:
            return await asyncio.wait_for(coroutine, REDIS_TIMEOUT_S * 2)
        except (RedisError, OSError, TimeoutError) as error:
            raise self._unavailable(f"redis at {redacted(self.settings.redis_url)} unreachable "
                                    f"({type(error).__name__})") from None  # fmt: skip

    async def submit(self, kwargs: dict[str, Any]) -> Job:
        queue = self._require()
        s = self.settings
        job = Job(
            function=JOB_FUNCTION,
            kwargs=kwargs,
            key=uuid.uuid4().hex,
            timeout=s.job_timeout_s,
            heartbeat=s.job_heartbeat_s,
            retries=s.job_retries,
            retry_delay=1.0,
            retry_backoff=True,
            ttl=s.job_result_ttl_s,
        )
        enqueued = await self._call(queue.enqueue(job))
        if enqueued is None:  # SAQ returns None for a duplicate key; a fresh uuid4 never is one
            raise APIError(409, f"job {job.key} already exists")
        return enqueued

    async def get(self, job_id: str) -> Job:
        queue = self._require()
        job = await self._call(queue.job(job_id))
        if job is None:
            raise APIError(404, f"no job {job_id[:64]!r} (finished jobs are kept {self.settings.job_result_ttl_s} s)",
                           limit={"job_result_ttl_s": self.settings.job_result_ttl_s})  # fmt: skip
        return job

    async def cancel(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job.status in (Status.COMPLETE, Status.FAILED, Status.ABORTED):
            raise APIError(409, f"job {job_id} already finished with status {job.status.value}")
        await self._call(job.abort("cancelled by the user"))
        return await self.get(job_id)

    async def counts(self) -> dict[str, int]:
        queue = self._require()
        return {kind: await self._call(queue.count(kind)) for kind in ("queued", "active", "incomplete")}
