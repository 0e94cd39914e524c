"""Faults done for real against real processes: Redis restarted (AOF), SIGTERM to the API mid-request and to a
worker mid-job. (A SIGKILLed worker and an unreachable Redis are in test_e2e.py and test_api.py.)"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.embedded_redis import free_port, start
from tests.service.conftest import LiveAPI, make_settings, png_b64, until_not_503, wait_for_job

pytestmark = pytest.mark.e2e


def test_queued_and_finished_jobs_survive_a_redis_restart(tmp_path: Path, start_worker) -> None:
    port, folder = free_port(), tmp_path / "redis-aof"
    redis = start(port, folder, appendonly=True)
    settings = make_settings(f"redis://127.0.0.1:{port}/0")
    try:
        with TestClient(create_app(settings)) as client:
            worker = start_worker(settings)
            finished = wait_for_job(client.get, client.post("/jobs", json={"n": 20}).json()["id"], timeout=90)
            assert finished["status"] == "complete"
            worker.kill(signal.SIGTERM)
            queued = client.post("/jobs", json={"n": 30}).json()
            assert queued["status"] == "queued"

            redis.terminate()  # a restart: SIGTERM flushes the append-only file, then the server starts on it again
            redis.wait(10)
            assert client.get(f"/jobs/{queued['id']}").status_code == 503  # down: job routes say so
            redis = start(port, folder, appendonly=True)

            after = until_not_503(lambda: client.get(f"/jobs/{finished['id']}")).json()
            assert after["status"] == "complete" and after["result"] == finished["result"]
            assert until_not_503(lambda: client.get(f"/jobs/{queued['id']}")).json()["status"] == "queued"
            start_worker(settings)
            assert wait_for_job(client.get, queued["id"], timeout=90)["status"] == "complete"
    finally:
        redis.terminate()
        redis.wait(10)


def test_sigterm_lets_the_api_finish_in_flight_requests(redis_url: str, tmp_path: Path, fashion_test) -> None:
    api = LiveAPI(make_settings(redis_url), tmp_path / "api.log")
    body = {"images": [png_b64(im) for im in fashion_test.images[:64]], "refine_steps": 150}
    outcome: dict = {}

    def slow_request() -> None:
        started = time.monotonic()
        outcome["response"] = httpx.post(f"{api.url}/invert", json=body, timeout=120)
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(1.0)  # the request is now being refined
    api.process.send_signal(signal.SIGTERM)
    thread.join(120)
    assert outcome["response"].status_code == 200, outcome["response"].text[:300]
    assert len(outcome["response"].json()["results"]) == 64 and outcome["seconds"] > 1.0
    # uvicorn drains, then re-raises the signal so that the exit status says how it ended.
    assert api.process.wait(30) in (0, -signal.SIGTERM)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api.url}/healthz", timeout=2)


def test_sigterm_lets_a_worker_finish_its_job(redis_url: str, start_worker) -> None:
    settings = make_settings(redis_url)
    with TestClient(create_app(settings)) as client:
        worker = start_worker(settings)
        job_id = client.post("/jobs", json={"n": 32, "batch_size": 4, "refine_steps": 15}).json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/jobs/{job_id}").json()["progress"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(60) == 0
        final = client.get(f"/jobs/{job_id}").json()
        assert final["status"] == "complete" and final["attempts"] == 1, final
