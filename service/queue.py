"""The job queue: SAQ on Redis (heartbeats, retries with backoff, progress, result TTL — no hand-written queue).

A job (`invert` or `metrics`) is a plan of chunks (service.chunks); each chunk is its own SAQ job, so any worker
takes any chunk and N workers run one job at once; the last chunk to finish enqueues the merge (one more SAQ job,
its key derived from the job's, so it is enqueued once however many chunks see the end). Redis holds metadata
only — the job record (a hash: request, plan size, status, the small JSON result), the set of finished chunks and
the set of workers that ran them; images, chunk files and results live in the result store (service.store).
The API enqueues and reads jobs; `python -m service.worker` runs them.

Redis being down never takes the API down: job routes answer 503 naming the Redis URL, `/readyz` reports it and
/invert, /edit, /outpaint keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from saq import Job, Queue
from saq.job import Status
from saq.queue.redis import RedisQueue

from service.errors import APIError
from service.settings import Settings

log = logging.getLogger("service")
CHUNK_FUNCTION = "dfi_chunk"
MERGE_FUNCTION = "dfi_merge"
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

    DEQUEUE_GRACE_S = 1.5  # ≥ one beat interval of the shortest heartbeat used (3 s in the fault tests → 1 s)

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        # SAQ's sweep (queue/redis.py) with the grace re-read; the same lock key keeps one sweeper at a time.
        if not await self.redis.set(self._sweep, 1, ex=lock, nx=True):
            return []
        ids = await self.redis.lrange(self._active, 0, -1)
        jobs = [self.deserialize(p) if p else None for p in (await self.redis.mget(ids) if ids else [])]
        swept: list[str] = []
        unsure, stuck = [], []
        for job_id, job in zip(ids, jobs, strict=True):
            if job is None:  # the id outlived its job: drop it, as SAQ does
                await self.redis.lrem(self._active, 0, job_id)
                await self.redis.zrem(self._incomplete, job_id)
                swept.append(job_id.decode())
            elif job.status not in (Status.ACTIVE, Status.ABORTING):
                unsure.append(job)
            elif job.stuck:
                stuck.append(job)
        if unsure or stuck:
            await asyncio.sleep(self.DEQUEUE_GRACE_S)
        for job in stuck:
            # A live worker whose beats could not reach Redis (a restart) beats again within a beat interval
            # (heartbeat / 3) of Redis coming back: re-read after the grace, and spare a job touched since —
            # sweeping it would cost a live chunk an attempt (issue 19).
            fresh = await self.job(job.key)
            if fresh is not None and fresh.touched == job.touched and fresh.stuck:
                await self._sweep_job(fresh, abort)
                swept.append(fresh.id)
        if unsure:
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


def make_queue(settings: Settings, patient: bool = False) -> Queue:
    # Our own client so that a dead Redis fails within REDIS_TIMEOUT_S instead of hanging a request. After a Redis
    # restart every pooled connection is dead: redis-py's Retry re-sends a command that met a closed connection on
    # a fresh one (and health checks probe idle ones), so a restart costs a job no attempt — it cost one of three
    # when a heartbeat met "Connection closed by server" (issue 19). The API retries 3 times (0.1–0.4 s: it answers
    # 503 soon); a worker (`patient`) 10 times, 0.1–1 s apart (~7 s): SAQ's own finish/retry calls ride out a restart.
    # Connection errors only: a socket timeout is how SAQ's blocking dequeue (BLMOVE) returns to check for a stop,
    # and retrying it held a SIGTERMed worker for its whole 30 s grace.
    client = aioredis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT_S,
                               socket_connect_timeout=REDIS_TIMEOUT_S, health_check_interval=5,
                               retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 10 if patient else 3,
                                           supported_errors=(RedisConnectionError,)),
                               retry_on_error=[RedisConnectionError])  # fmt: skip
    return SweepSafeRedisQueue(client, name=settings.queue_name)


TERMINAL = (Status.COMPLETE, Status.FAILED, Status.ABORTED)


def chunk_key(job_id: str, index: int) -> str:
    return f"{job_id}-c{index:05d}"


def merge_key(job_id: str) -> str:
    return f"{job_id}-merge"


class JobKeys:
    """The Redis keys of one job's metadata (prefixed by the queue name: several services can share a Redis)."""

    def __init__(self, queue_name: str, job_id: str) -> None:
        base = f"dfi:{queue_name}:job:{job_id}"
        self.record, self.done, self.workers = base, f"{base}:done", f"{base}:workers"
        self.open = f"dfi:{queue_name}:open"  # ids of jobs not yet finished: what the repair pass looks at
        self.repair_lock = f"dfi:{queue_name}:repair"


def _listed(job: Job, queued: set[bytes], active: set[bytes]) -> bool:
    return job.id.encode() in queued or job.id.encode() in active


def _silent(job: Job, now_ms: float, stale_s: float) -> bool:
    return now_ms - max(job.touched, job.queued, job.started) > stale_s * 1000


def error_line(text: str | None) -> str | None:
    return (text or "").strip().splitlines()[-1] if text else None


class JobQueue:
    def __init__(self, settings: Settings, patient: bool = False) -> None:
        self.settings = settings
        self.queue: Queue | None = make_queue(settings, patient) if settings.redis_url else None

    def _unavailable(self, why: str) -> APIError:
        return APIError(503, f"job queue unavailable: {why}; /invert, /edit and /outpaint still work")

    def _require(self) -> Queue:
        if self.queue is None:
            raise self._unavailable("no REDIS_URL configured")
        return self.queue

    @property
    def redis(self) -> aioredis.Redis:
        return self._require().redis  # type: ignore[attr-defined]

    def keys(self, job_id: str) -> JobKeys:
        return JobKeys(self.settings.queue_name, job_id)

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

    async def require_up(self) -> None:
        """503 now rather than after a client has streamed a large upload."""
        self._require()
        up, why = await self.ping()
        if not up:
            raise self._unavailable(why)

    async def _call(self, coroutine: Any, timeout: float = REDIS_TIMEOUT_S * 2) -> Any:
        try:
            return await asyncio.wait_for(coroutine, timeout)
        except (RedisError, OSError, TimeoutError) as error:
            raise self._unavailable(f"redis at {redacted(self.settings.redis_url)} unreachable "
                                    f"({type(error).__name__})") from None  # fmt: skip

    def _saq_job(self, function: str, key: str, kwargs: dict[str, Any]) -> Job:
        s = self.settings
        return Job(function=function, kwargs=kwargs, key=key, timeout=s.job_timeout_s, heartbeat=s.job_heartbeat_s,
                   retries=s.job_retries, retry_delay=1.0, retry_backoff=True, ttl=s.job_result_ttl_s)  # fmt: skip

    async def submit(self, job_id: str, plan: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        """Record the job and enqueue one SAQ job per chunk of `plan` (service.chunks.make_plan)."""
        queue = self._require()
        keys = self.keys(job_id)
        record = {"kind": plan["spec"]["kind"], "model": plan["model"], "request": json.dumps(request),
                  "chunks": len(plan["chunks"]), "count": plan["count"], "status": "queued",
                  "created": time.time(), "runs": 0}  # fmt: skip
        common = {"job_id": job_id, "model": plan["model"], "source": plan["source"], "spec": plan["spec"]}
        jobs = [self._saq_job(CHUNK_FUNCTION, chunk_key(job_id, i), {**common, "index": i, "start": a, "stop": b})
                for i, (a, b) in enumerate(plan["chunks"])]  # fmt: skip

        # What a repair needs to re-create a lost chunk job: the common kwargs and every chunk's bounds.
        record["chunk_kwargs"] = json.dumps({"common": common, "bounds": plan["chunks"]})

        async def enqueue_all() -> None:
            await queue.redis.hset(keys.record, mapping=record)  # type: ignore[attr-defined]
            await queue.redis.sadd(keys.open, job_id)  # type: ignore[attr-defined]
            for job in jobs:
                await queue.enqueue(job)

        await self._call(enqueue_all(), REDIS_TIMEOUT_S * 2 + 0.05 * len(jobs))
        return await self.get(job_id)

    async def record(self, job_id: str) -> dict[str, str]:
        raw = await self._call(self.redis.hgetall(self.keys(job_id).record))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def _chunks(self, job_id: str, count: int) -> list[Job | None]:
        queue = self._require()
        ids = [queue.job_id(chunk_key(job_id, i)) for i in range(count)] + [queue.job_id(merge_key(job_id))]
        payloads = await self._call(self.redis.mget(ids))
        return [queue.deserialize(p) if p else None for p in payloads]

    def _missing(self, job_id: str, expired: float | None) -> APIError:
        ttl = self.settings.job_result_ttl_s
        if expired is not None:
            return APIError(410, f"job {job_id} expired at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(expired))} "
                                 f"UTC (finished jobs are kept job_result_ttl_s = {ttl} s)",
                            limit={"job_result_ttl_s": ttl})  # fmt: skip
        return APIError(404, f"no job {job_id[:64]!r} (finished jobs are kept {ttl} s)",
                        limit={"job_result_ttl_s": ttl})  # fmt: skip

    async def get(self, job_id: str, expired: float | None = None) -> dict[str, Any]:
        """The job as clients see it: status and progress aggregated over its chunks."""
        record = await self.record(job_id)
        if not record:
            raise self._missing(job_id, expired)
        total = int(record["chunks"])
        *chunks, merge = await self._chunks(job_id, total)
        workers = sorted(w.decode() for w in await self._call(self.redis.smembers(self.keys(job_id).workers)))
        done = sum(1 for c in chunks if c is not None and c.status == Status.COMPLETE)
        running = sum(1 for c in chunks if c is not None and c.status in (Status.ACTIVE, Status.ABORTING))
        status, error = record["status"], record.get("error")
        # A chunk aborted by the user's cancel is cancelled, not failed; aborted otherwise, SAQ's sweep gave up on it.
        lost = (Status.FAILED,) if status == "cancelled" else (Status.FAILED, Status.ABORTED)
        failed = [(i, c) for i, c in enumerate(chunks) if c is not None and c.status in lost]
        if status == "cancelled":
            status = "aborting" if running else "aborted"
        elif status == "queued":  # neither finished nor failed by a worker's verdict: what the chunks say
            if failed:
                index, chunk = failed[0]
                status, error = "failed", f"chunk {index}: {error_line(chunk.error)}"
            elif merge is not None and merge.status in (Status.FAILED, Status.ABORTED):
                status, error = "failed", f"merge: {error_line(merge.error)}"
            elif running or done or (merge is not None and merge.status == Status.ACTIVE):
                status = "active"
        if record["status"] == "complete":
            progress = 1.0
        else:
            partial = sum(c.progress for c in chunks if c is not None and c.status in (Status.ACTIVE,))
            progress = min(1.0, (done + partial) / max(total, 1))
        started = [c.started for c in chunks if c is not None and c.started]
        result = json.loads(record["result"]) if record.get("result") else None
        return {
            "id": job_id,
            "kind": record["kind"],
            "status": status,
            "progress": round(progress, 4),
            "model": record["model"],
            "created": float(record["created"]),
            "started": min(started) / 1000 if started else None,
            "completed": float(record["completed"]) if record.get("completed") else None,
            "attempts": max((c.attempts for c in chunks if c is not None), default=0),
            "chunks": {"total": total, "done": done, "running": running, "failed": len(failed)},
            "chunk_runs": int(record.get("runs", 0)),
            "workers": workers,
            "result": result,
            "error": error,
            "request": json.loads(record["request"]),
        }

    async def finish(self, job_id: str, status: str, fields: dict[str, Any]) -> None:
        """Mark the job finished (complete / failed / cancelled) and start its TTL."""
        keys, ttl = self.keys(job_id), self.settings.job_result_ttl_s

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.record, mapping={**fields, "status": status, "completed": time.time()})
                for key in (keys.record, keys.done, keys.workers):
                    pipe.expire(key, ttl)
                pipe.srem(keys.open, job_id)
                await pipe.execute()

        await self._call(write())

    async def cancel(self, job_id: str, expired: float | None = None) -> dict[str, Any]:
        job = await self.get(job_id, expired)
        if job["status"] in ("complete", "failed", "aborted", "aborting"):
            raise APIError(409, f"job {job_id} already finished with status {job['status']}")
        await self.finish(job_id, "cancelled", {"error": "cancelled by the user"})
        queue = self._require()
        for chunk in await self._chunks(job_id, job["chunks"]["total"]):
            if chunk is not None and chunk.status not in TERMINAL:
                await self._call(queue.abort(chunk, "cancelled by the user"))
        return await self.get(job_id)

    async def repair(self, stale_s: float, lock_s: float) -> list[str]:
        """Re-create what a Redis restart can lose (append-only file: up to a second of writes) or leave orphaned,
        for every open job; what each worker runs every DFI_WORKER_SWEEP_S. Idempotent: chunks are keyed by job
        and index, SAQ refuses a second enqueue of a key it holds, and a chunk whose file exists is not recomputed.

        - a chunk job that is gone, or QUEUED in no list (its push lost): enqueued again;
        - a chunk ACTIVE or ABORTING in no list and silent for `stale_s`: SAQ's abort removes a job from the active
          list before the sweep re-queues it, so a restart (or a dead sweeper) between the two left it "aborting"
          with no one to finish it — the job stuck forever (issue 19, 1 run in 9): enqueued again;
        - every chunk done but no merge job (the enqueue lost): the merge is enqueued.
        Returns what it did, as "job: action" lines."""
        queue = self._require()
        redis = self.redis
        if not await redis.set(self.keys("").repair_lock, 1, ex=max(1, int(lock_s)), nx=True):
            return []  # another worker repairs this round
        done: list[str] = []
        # Queued before active: BLMOVE moves an id from one to the other atomically, so a live job is in one of the
        # two snapshots; a job that changed list since is not silent for stale_s, so it is never taken for lost.
        queued = set(await redis.lrange(queue._queued, 0, -1))  # type: ignore[attr-defined]
        active = set(await redis.lrange(queue._active, 0, -1))  # type: ignore[attr-defined]
        now_ms = time.time() * 1000
        for raw_id in await redis.smembers(self.keys("").open):
            job_id = raw_id.decode()
            record = await self.record(job_id)
            if record.get("status") != "queued":
                await redis.srem(self.keys(job_id).open, job_id)
                continue
            kwargs = json.loads(record["chunk_kwargs"])
            *chunks, merge = await self._chunks(job_id, int(record["chunks"]))
            for index, chunk in enumerate(chunks):
                if chunk is not None and chunk.status in TERMINAL:
                    continue
                if chunk is None or (not _listed(chunk, queued, active) and _silent(chunk, now_ms, stale_s)):
                    start, stop = kwargs["bounds"][index]
                    bounds = {"index": index, "start": start, "stop": stop}
                    fresh = self._saq_job(CHUNK_FUNCTION, chunk_key(job_id, index), {**kwargs["common"], **bounds})
                    if chunk is not None:
                        fresh.attempts = chunk.attempts  # an orphan keeps the attempts it spent
                        await redis.delete(chunk.abort_id)  # SAQ refuses to enqueue a key with a pending abort
                        await redis.zrem(queue._incomplete, chunk.id)  # type: ignore[attr-defined]
                    if await queue.enqueue(fresh) is not None:
                        done.append(f"{job_id}: chunk {index} re-enqueued ({chunk.status.value if chunk else 'lost'})")
            all_done = all(c is not None and c.status == Status.COMPLETE for c in chunks)
            lost_merge = merge is None or (merge.status not in TERMINAL and not _listed(merge, queued, active)
                                           and _silent(merge, now_ms, stale_s))  # fmt: skip
            if all_done and lost_merge:
                if merge is not None:
                    await redis.zrem(queue._incomplete, merge.id)  # type: ignore[attr-defined]
                if await queue.enqueue(self._saq_job(MERGE_FUNCTION, merge_key(job_id), {"job_id": job_id})):
                    done.append(f"{job_id}: merge enqueued")
        return done

    async def counts(self) -> dict[str, int]:
        queue = self._require()
        return {kind: await self._call(queue.count(kind)) for kind in ("queued", "active", "incomplete")}
