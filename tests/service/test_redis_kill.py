"""Issue 19, item 5, in CI: Redis SIGKILLed and restarted while a job runs (the 20-run figure comes from
benchmarks/redis_kill_runs.py), and the orphan that made a job hang in "aborting" forever, rebuilt with SAQ's own
calls and repaired by a worker."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from saq.job import Status

from service.app import create_app
from service.embedded_redis import free_port, start
from service.queue import JobQueue
from tests.service.conftest import make_settings, until_not_503, wait_for_job

pytestmark = pytest.mark.e2e


def test_a_redis_sigkill_mid_job_spends_no_attempt_and_changes_nothing(tmp_path: Path, start_worker) -> None:
    port, folder = free_port(), tmp_path / "redis"
    redis = start(port, folder, appendonly=True)
    settings = make_settings(f"redis://127.0.0.1:{port}/0", job_heartbeat_s=3, worker_sweep_s=1)
    request = {"kind": "invert", "n": 1200, "refine_steps": 3}  # 769 images a chunk: 2 chunks of ~1 s
    try:
        with TestClient(create_app(settings)) as client:
            start_worker(settings)
            reference = wait_for_job(client.get, client.post("/jobs", json=request).json()["id"], timeout=120)
            job_id = client.post("/jobs", json=request).json()["id"]
            deadline = time.monotonic() + 60
            while client.get(f"/jobs/{job_id}").json()["chunks"]["running"] == 0:  # inside the first chunk
                assert time.monotonic() < deadline
                time.sleep(0.05)
            redis.send_signal(signal.SIGKILL)  # no chance to flush: what the append-only file has, it has
            redis.wait(10)
            time.sleep(1.5)
            redis = start(port, folder, appendonly=True)
            done = time.monotonic() + 120
            while True:
                job = until_not_503(lambda: client.get(f"/jobs/{job_id}"), timeout=60).json()
                if job["status"] in ("complete", "failed"):
                    break
                assert time.monotonic() < done, job
                time.sleep(0.2)
            assert job["status"] == "complete", job
            assert job["attempts"] == 1, job  # the restart cost no chunk an attempt
            result, expected = (client.get(f"/jobs/{i}/result").content for i in (job_id, reference["id"]))
            assert result == expected
    finally:
        redis.terminate()
        redis.wait(10)


def test_an_orphaned_aborting_chunk_is_repaired(redis_url: str, start_worker) -> None:
    settings = make_settings(redis_url, job_heartbeat_s=2, worker_sweep_s=1, job_chunk_images=200)
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/jobs", json={"kind": "invert", "n": 400}).json()["id"]  # 2 chunks, no worker yet

        async def orphan() -> str:
            # A worker that dequeued a chunk and died, then SAQ's sweep: abort() marks it ABORTING and takes it off
            # the active list and `incomplete`; the sweeper died (or Redis restarted) before re-queuing it — after
            # that no sweep ever sees it again. Built here with SAQ's own calls, in that order.
            queue = JobQueue(settings)
            await queue.connect()
            taken = await queue.queue.dequeue(timeout=5)
            taken.attempts += 1
            taken.started = int(time.time() * 1000)
            await taken.update(status=Status.ACTIVE)
            await queue.queue.abort(taken, "swept (simulated: the sweeper died here)")
            fresh = await queue.queue.job(taken.key)
            assert fresh.status == Status.ABORTING, fresh.status
            await queue.close()
            return taken.key

        key = asyncio.run(orphan())
        time.sleep(2 * settings.job_heartbeat_s + 0.5)  # silent for the repair's stale time
        worker = start_worker(settings)
        job = wait_for_job(client.get, job_id, timeout=90, until=("complete", "failed", "aborted"))
        assert job["status"] == "complete", job
        assert job["chunks"] == {"total": 2, "done": 2, "running": 0, "failed": 0}
        index = int(key.rsplit("-c", 1)[1])
        assert f"chunk {index} re-enqueued (aborting)" in worker.log.read_text()
