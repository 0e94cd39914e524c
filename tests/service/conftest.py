"""Service fixtures: a real redis-server (embedded binary, or $DFI_REDIS_SERVER / $REDIS_URL), apps on the shipped
bundles, and live API / worker processes for the end-to-end tests."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.embedded_redis import free_port, start
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    port = free_port()
    process = start(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


def png_bytes(image: np.ndarray) -> bytes:
    """[H, W, C] uint8 → PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_b64(image: np.ndarray) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    """base64 PNG → [H, W, C] uint8."""
    array = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))
    return array[:, :, None] if array.ndim == 2 else array


@pytest.fixture(scope="session")
def fashion_test():
    from dfi_core.datasets import load_fashion_mnist

    return load_fashion_mnist("test")


def make_settings(redis_url: str | None, **overrides) -> Settings:
    # Each settings object gets its own result store (API and the workers started with it share it).
    results = Path(tempfile.mkdtemp(prefix="dfi-results-"))
    values = {"models_dir": MODELS, "redis_url": redis_url, "queue_name": f"test-{uuid.uuid4().hex[:8]}",
              "worker_metrics_port": 0, "results_dir": results, **overrides}  # fmt: skip
    return Settings(**values)


@pytest.fixture(scope="module")
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFI_")}
    env.update({"REDIS_URL": settings.redis_url or "", "DFI_MODELS_DIR": str(settings.models_dir),
                "DFI_QUEUE_NAME": settings.queue_name, "DFI_WORKER_METRICS_PORT": "0",
                "DFI_RESULTS_DIR": str(settings.results_dir), "DFI_JOB_CHUNK_IMAGES": str(settings.job_chunk_images),
                "DFI_JOB_RETRIES": str(settings.job_retries),
                "DFI_JOB_HEARTBEAT_S": str(settings.job_heartbeat_s),
                "DFI_WORKER_SWEEP_S": str(settings.worker_sweep_s),
                "DFI_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", **extra})  # fmt: skip
    return env


class Worker:
    """A `python -m service.worker` process."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "service.worker"], env=process_env(settings),
                                        cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    workers: list[Worker] = []

    def _start(settings: Settings) -> Worker:
        worker = Worker(settings, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield _start
    # SIGKILL, all at once: a graceful stop is what test_faults.py's SIGTERM tests check; here it only cost time
    # (an idle worker took ~10 s to stop on SIGTERM, one after another in this teardown).
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
    for worker in workers:
        worker.process.wait(30)


class LiveAPI:
    """`python -m service` on a free port, over real HTTP."""

    def __init__(self, settings: Settings, log: Path, models: tuple[str, ...] = ("fashion-mnist",),
                 **extra_env: str) -> None:  # fmt: skip
        self.port = free_port()
        env = process_env(settings, PORT=str(self.port), DFI_MODELS=json.dumps(list(models)), **extra_env)
        self.process = subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=ROOT, stdout=log.open("ab"),
                                        stderr=subprocess.STDOUT)  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"API not ready in 60 s: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def until_not_503(call, timeout: float = 20):  # noqa: ANN001, ANN201
    """The first response that is not a 503 (Redis down or reconnecting: the client reconnects on its next command)."""
    deadline = time.monotonic() + timeout
    while True:
        response = call()
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def wait_for_job(get, job_id: str, timeout: float = 120, until=("complete", "failed", "aborted")) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(f"/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished in {timeout} s: {job}")
