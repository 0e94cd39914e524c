"""Issue 18's acceptance checks, for real: a real redis-server, two or more `python -m service.worker` processes,
the shipped bundle, real Fashion-MNIST test images and the result store on disk.

Fan-out over two workers, byte-identical results for one and two workers, a worker SIGKILLed mid-job (rework at
most one chunk), cancel, an archive with bad members, the result download (409 / 404 / 410), a result store that
cannot take the write, and the offline twin against the job path on the same input.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.chunks import chunk_images
from service.store import ResultStore
from tests.service.conftest import ROOT, Worker, make_settings, png_bytes, process_env, wait_for_job

pytestmark = pytest.mark.e2e
CHUNK = 100  # images per chunk: small, so that a few hundred images make several chunks


def _settings(redis_url: str, **overrides):  # noqa: ANN202
    # Short heartbeat and sweep: a killed worker's chunk is taken over within seconds.
    return make_settings(redis_url, job_chunk_images=CHUNK, job_heartbeat_s=3, worker_sweep_s=1, **overrides)


def _ready(*workers: Worker, timeout: float = 90) -> None:
    """Until every worker has loaded its bundles (its start-up log line): a job submitted earlier could be taken
    whole by the first one up."""
    deadline = time.monotonic() + timeout
    for worker in workers:
        while "models [" not in worker.log.read_text(errors="replace"):
            assert worker.process.poll() is None, worker.log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"worker not ready: {worker.log.read_text()[-2000:]}"
            time.sleep(0.1)


def _zip(images: np.ndarray, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, image in enumerate(images):
            archive.writestr(f"img/{i:04d}.png", png_bytes(image))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npz(content: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(content), allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}


def _download(client: TestClient, job_id: str) -> bytes:
    response = client.get(f"/jobs/{job_id}/result")
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="dfi-{job_id}.npz"'
    return response.content


def test_one_and_two_workers_give_byte_identical_results_and_both_are_named(redis_url: str, start_worker,
                                                                            fashion_test) -> None:  # fmt: skip
    settings = _settings(redis_url)
    invert = {"kind": "invert", "n": 1500, "return_reconstructions": True}
    metric = {"n": 1500, "metrics": ["psnr", "ssim", "class_consistency"], "batch_size": 100}
    with TestClient(create_app(settings)) as client:
        first = start_worker(settings)
        _ready(first)
        alone = wait_for_job(client.get, client.post("/jobs", json=invert).json()["id"])
        alone_metrics = wait_for_job(client.get, client.post("/jobs", json=metric).json()["id"])
        assert alone["status"] == alone_metrics["status"] == "complete", (alone, alone_metrics)
        assert len(alone["workers"]) == 1 and alone["chunks"] == {"total": 15, "done": 15, "running": 0, "failed": 0}

        _ready(start_worker(settings))
        both = wait_for_job(client.get, client.post("/jobs", json=invert).json()["id"])
        both_metrics = wait_for_job(client.get, client.post("/jobs", json=metric).json()["id"])
        assert both["status"] == both_metrics["status"] == "complete"
        # 15 chunks of ~0.1 s each and two idle workers polling the same queue: both take some.
        assert len(both["workers"]) == 2 and len(both_metrics["workers"]) == 2, (both["workers"], both_metrics)
        a, b = _download(client, alone["id"]), _download(client, both["id"])
        assert hashlib.sha256(a).hexdigest() == alone["result"]["sha256"]
        assert a == b  # byte-identical, whatever the number of workers
        # Per-image values are kept per chunk and summarised over the concatenation: the same numbers exactly.
        assert alone_metrics["result"]["metrics"] == both_metrics["result"]["metrics"]
        assert client.get(f"/jobs/{both_metrics['id']}/result").json() == both_metrics["result"]

    arrays = _npz(a)
    assert arrays["z"].shape == (1500, 64) and arrays["z"].dtype == np.float32
    assert arrays["names"].tolist() == [str(i) for i in range(1500)] and arrays["errors"].shape == (0, 2)
    assert arrays["reconstructions"].shape == (1500, 28, 28, 1) and arrays["reconstructions"].dtype == np.uint8
    # The reconstructions are G(z) of these very latents, and look like their inputs (the shipped DFI reaches
    # ~17 dB on F-MNIST test images; 12 dB is far above what unrelated images give, ~6 dB).
    mse = ((arrays["reconstructions"] / 255.0 - fashion_test.images[:1500] / 255.0) ** 2).mean()
    assert 10 * np.log10(1 / mse) > 12


def test_a_worker_killed_mid_job_costs_at_most_one_chunk_and_changes_nothing(redis_url: str, start_worker) -> None:
    settings = _settings(redis_url)
    # Refinement makes chunks slow enough to kill a worker inside one: 10 steps → 50 images a chunk, 8 chunks.
    request = {"kind": "invert", "n": 400, "refine_steps": 10, "batch_size": 25}
    with TestClient(create_app(settings)) as client:
        first = start_worker(settings)
        _ready(first)
        job_id = client.post("/jobs", json=request).json()["id"]
        deadline = time.monotonic() + 120
        while True:
            state = client.get(f"/jobs/{job_id}").json()
            if state["chunks"]["done"] >= 2 and state["chunks"]["running"] == 1 and state["progress"] > 0:
                break
            assert time.monotonic() < deadline and state["status"] != "complete", state
            time.sleep(0.05)
        first.kill(signal.SIGKILL)  # inside a chunk, no chance to clean up
        before = client.get(f"/jobs/{job_id}").json()
        assert before["status"] == "active" and before["chunks"]["done"] < 8, before
        start_worker(settings)
        taken_over = wait_for_job(client.get, job_id, timeout=180)
        assert taken_over["status"] == "complete", taken_over
        assert taken_over["chunks"]["total"] == 8
        # Rework: chunk computations started beyond one per chunk. The killed chunk, and nothing already written.
        assert taken_over["chunk_runs"] - 8 <= 1, taken_over
        assert taken_over["attempts"] == 2
        again = wait_for_job(client.get, client.post("/jobs", json=request).json()["id"], timeout=180)
        assert again["chunk_runs"] == 8 and again["attempts"] == 1
        assert _download(client, job_id) == _download(client, again["id"])  # deterministic: one result, not two


def test_a_job_is_cancelled_in_every_chunk(redis_url: str, start_worker) -> None:
    settings = _settings(redis_url)
    with TestClient(create_app(settings)) as client:
        _ready(start_worker(settings))
        job_id = client.post("/jobs", json={"kind": "invert", "n": 2000, "refine_steps": 20}).json()["id"]
        deadline = time.monotonic() + 90
        while client.get(f"/jobs/{job_id}").json()["chunks"]["done"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        cancelled = client.delete(f"/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] in ("aborting", "aborted"), cancelled.text
        final = wait_for_job(client.get, job_id, timeout=60, until=("aborted",))
        total = final["chunks"]["total"]
        assert total == -(-2000 // chunk_images(CHUNK, 20)) == 61, final  # 20 steps: 33 images a chunk
        assert final["chunks"]["done"] < total and final["chunks"]["running"] == final["chunks"]["failed"] == 0, final
        assert final["error"] == "cancelled by the user"
        assert client.delete(f"/jobs/{job_id}").status_code == 409
        refused = client.get(f"/jobs/{job_id}/result")
        assert refused.status_code == 409 and "aborted" in refused.json()["error"]["message"]
        time.sleep(1.5)  # no chunk of a cancelled job runs afterwards
        assert client.get(f"/jobs/{job_id}").json()["chunks"]["done"] == final["chunks"]["done"]


def test_bad_members_are_skipped_with_reasons_and_an_archive_without_images_fails(redis_url: str, start_worker,
                                                                                 fashion_test) -> None:  # fmt: skip
    settings = _settings(redis_url)
    good = fashion_test.images[:150]
    truncated = png_bytes(fashion_test.images[200])[:60]
    archive = _zip(good, {"img/notes.txt": b"not an image", "img/0075-cut.png": truncated, "__MACOSX/._x": b"x"})
    with TestClient(create_app(settings)) as client:
        start_worker(settings)
        files = {"archive": ("mixed.zip", archive, "application/zip")}
        accepted = client.post("/jobs/upload", files=files, data={"kind": "invert"})
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["location"] == f"/jobs/{accepted.json()['id']}"
        job = wait_for_job(client.get, accepted.json()["id"])
        assert job["status"] == "complete" and job["chunks"]["total"] == 2, job  # 152 members, 100 a chunk
        arrays = _npz(_download(client, job["id"]))
        assert arrays["names"].tolist() == [f"img/{i:04d}.png" for i in range(150)]  # sorted: the input order
        errors = dict(arrays["errors"].tolist())
        assert set(errors) == {"img/notes.txt", "img/0075-cut.png"}, errors
        assert "not an image" in errors["img/notes.txt"] and "truncated" in errors["img/0075-cut.png"], errors
        assert job["result"]["errors"] == errors and job["result"]["n"] == 150

        useless = _zip(good[:0], {"a.txt": b"x", "b.bin": b"\x00" * 10})
        submitted = client.post("/jobs/upload", files={"archive": ("u.zip", useless)})
        failed = wait_for_job(client.get, submitted.json()["id"])
        assert failed["status"] == "failed" and "no usable image (2 files skipped" in failed["error"], failed


def test_the_result_route_answers_409_404_422_and_410(redis_url: str) -> None:
    import redis

    settings = _settings(redis_url)
    with TestClient(create_app(settings)) as client:  # no worker: the job stays queued
        job_id = client.post("/jobs", json={"kind": "invert", "n": 10}).json()["id"]
        waiting = client.get(f"/jobs/{job_id}/result")
        assert waiting.status_code == 409 and "queued" in waiting.json()["error"]["message"]
        assert client.get("/jobs/" + "0" * 32 + "/result").status_code == 404
        assert client.get("/jobs/not-hex/result").status_code == 422
        assert client.get("/jobs/" + "A" * 32).status_code == 422

        # Expiry, as the worker's sweep and Redis's TTL do it: the store's files go first (a tombstone stays) ...
        removed = ResultStore(settings.results_dir).sweep(now=time.time() + 10 * settings.job_result_ttl_s)
        assert job_id in removed and not (settings.results_dir / job_id).exists()
        # ... then Redis forgets the record: the API still knows the job existed.
        client_redis = redis.Redis.from_url(redis_url)
        client_redis.delete(*client_redis.keys(f"dfi:{settings.queue_name}:job:{job_id}*"))
        gone = client.get(f"/jobs/{job_id}")
        assert gone.status_code == 410 and "expired" in gone.json()["error"]["message"], gone.text
        assert client.get(f"/jobs/{job_id}/result").status_code == 410


def test_a_result_store_that_cannot_take_the_write_fails_the_job_with_that_message(redis_url: str,
                                                                                  tmp_path: Path) -> None:  # fmt: skip
    settings = _settings(redis_url)

    def small_files() -> None:  # a real fault: the kernel refuses writes past 16 KiB (EFBIG), as a full disk would
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "service.worker"], env=process_env(settings), cwd=ROOT,
                              stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=small_files)  # fmt: skip
    try:
        with TestClient(create_app(settings)) as client:
            job_id = client.post("/jobs", json={"kind": "invert", "n": 300}).json()["id"]
            job = wait_for_job(client.get, job_id, timeout=120)
            assert job["status"] == "failed", job
            assert "result store: cannot write" in job["error"] and "file too large" in job["error"], job["error"]
            assert job["chunk_runs"] == 1  # failed at once: no retry can make the store take it
            assert client.get(f"/jobs/{job_id}/result").status_code == 409
        chunks = settings.results_dir / job_id / "chunks"
        assert not list(chunks.glob("*.npz")), list(chunks.iterdir())  # no partial file under a final name
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


def test_the_offline_twin_writes_the_same_bytes_as_the_job(redis_url: str, start_worker, fashion_test,
                                                           tmp_path: Path) -> None:  # fmt: skip
    settings = _settings(redis_url)
    archive = tmp_path / "photos.zip"
    archive.write_bytes(_zip(fashion_test.images[:250], {"readme.md": b"# not an image"}))
    with TestClient(create_app(settings)) as client:
        start_worker(settings)
        files = {"archive": ("photos.zip", archive.read_bytes(), "application/zip")}
        job = client.post("/jobs/upload", files=files, data={"kind": "invert", "return_reconstructions": "true"})
        job_bytes = _download(client, wait_for_job(client.get, job.json()["id"])["id"])
    out = tmp_path / "offline"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFI_")}
    command = [sys.executable, "-m", "service.batch", "invert", "--model", str(ROOT / "models" / "fashion-mnist"),
               "--input", str(archive), "--out", str(out), "--chunk-size", str(CHUNK), "--reconstructions"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "result.npz").read_bytes() == job_bytes
