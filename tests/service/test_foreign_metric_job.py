"""A metric job on an uploaded archive, for a bundle of a GAN no one here wrote (issue 17): torch-mimicry's SNGAN
bundle (docs/byo-gan/models/mimicry-sngan; no classifier, no generator.safetensors). A real redis-server, the
service's SAQ worker serving only a tmp copy of that bundle, and POST /jobs/upload through the API's app.

The job's PSNR and latent norms are checked against the bundle's own graphs run here (ONNX Runtime), and what a
foreign bundle lacks (a classifier) is refused by name; behind `slow`, SSIM and DFI^opt, which refines through
generator.onnx (onnx2torch, there being no zoo G).
"""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import service.worker
from dfi_core.bundle import load_bundle
from dfi_core.metrics import psnr, summarize
from dfi_core.preprocessing import to_model_range
from service.app import create_app
from service.settings import Settings
from service.worker import _run as run_worker
from service.worker import build_worker
from tests.service.conftest import ROOT, make_settings, png_bytes, wait_for_job

NAME = "mimicry-sngan"
CPU = ["CPUExecutionProvider"]
BUNDLE = ROOT / "docs" / "byo-gan" / "models" / NAME
N = 20  # images in the archive: 2 chunks of 16 and 4 (16: the least chunk size, service.chunks.chunk_images)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (BUNDLE / "manifest.json").is_file(), reason=f"{BUNDLE} is not in this checkout"),
]


@pytest.fixture(scope="module")
def foreign(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    """Settings over a models dir holding only a copy of the foreign bundle, and the service's SAQ worker
    (`service.worker.build_worker`, what `python -m service.worker` runs) serving it from a thread of this process:
    the same worker code, queue and result store, without a second start-up that imports torch again (seconds)."""
    tmp = tmp_path_factory.mktemp("foreign-job")
    models = tmp / "models"
    shutil.copytree(BUNDLE, models / NAME)  # never served from docs/: the test must not touch the committed bundle
    # No refinement warm-up (a G conversion at start-up); chunks of 16 images, the least there is.
    settings = make_settings(redis_url, models_dir=models, default_model=NAME, models=[NAME], job_chunk_images=16,
                             refinement_warm_up=False)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service.worker, "SHUTDOWN_GRACE_S", 0)  # at the end nothing runs: no grace period to wait out
        worker = build_worker(settings)
    worker.SIGNALS = []  # signal handlers can be installed from the main thread only; the test stops it itself
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(run_worker(worker),), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while "registry" not in worker.context:  # its start-up has loaded the bundle
            assert thread.is_alive() and time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        yield settings, models / NAME
    finally:
        loop.call_soon_threadsafe(worker.event.set)  # what SIGTERM does: stop taking chunks, then shut down
        thread.join(30)
        loop.close()


def _archive(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for i, image in enumerate(images):
            zipped.writestr(f"upload/{i:02d}.png", png_bytes(image))
        zipped.writestr("upload/notes.txt", b"not an image")  # skipped with its reason, the job still runs
    return buffer.getvalue()


def _run(client: TestClient, archive: dict, **fields: str) -> dict:
    submitted = client.post("/jobs/upload", files=archive, data=fields)
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["model"] == NAME and submitted.json()["chunks"]["total"] == 2
    job = wait_for_job(client.get, submitted.json()["id"], timeout=120)
    assert job["status"] == "complete", job
    result = job["result"]
    assert result["model"] == NAME and result["n"] == N and result["settings"]["chunks"] == 2
    assert result["source"] == f"upload ({N + 1} files)" and list(result["errors"]) == ["upload/notes.txt"]
    return result


def test_a_metric_job_on_an_uploaded_archive_runs_for_a_foreign_bundle(foreign, fashion_test) -> None:
    settings, folder = foreign
    images = fashion_test.images[:N]
    archive = {"archive": ("upload.zip", _archive(images), "application/zip")}
    with TestClient(create_app(settings)) as client:
        refused = client.post("/jobs/upload", files=archive, data={"metrics": "psnr,class_consistency"})
        assert refused.status_code == 422, refused.text
        assert f"model {NAME} has no classifier graph" in refused.json()["error"]["message"]
        result = _run(client, archive, metrics="psnr,latent_norm", batch_size="5")
    assert result["method"] == "dfi"
    # The same scores from the bundle's own graphs, run here: the job inverted and scored these very images.
    bundle = load_bundle(folder)
    x = to_model_range(images)
    z = bundle.open_graph("invert", providers=CPU)(x)
    recon = bundle.open_graph("generator", providers=CPU)(z)
    for name, values in (("psnr", psnr(recon, x)), ("latent_norm", np.linalg.norm(z, axis=1))):
        want = summarize(values)
        assert result["metrics"][name]["n"] == N
        assert result["metrics"][name]["mean"] == pytest.approx(want["mean"], abs=1e-4), name
        assert result["metrics"][name]["std"] == pytest.approx(want["std"], abs=1e-4), name


@pytest.mark.slow  # torchmetrics and onnx2torch's conversion of SNGAN's G: ~10 s on 2 shared cores
def test_ssim_and_refinement_through_generator_onnx_for_a_foreign_bundle(foreign, fashion_test) -> None:
    settings, _ = foreign
    archive = {"archive": ("upload.zip", _archive(fashion_test.images[:N]), "application/zip")}
    with TestClient(create_app(settings)) as client:
        plain = _run(client, archive, metrics="psnr,ssim")
        refined = _run(client, archive, metrics="psnr,ssim", refine_steps="3")
    assert 0 < plain["metrics"]["ssim"]["mean"] < 1
    # DFI^opt: refinement (eq. 2) through generator.onnx converted by onnx2torch, the only G a foreign bundle has.
    assert refined["method"] == "dfi_opt" and refined["settings"]["refine_steps"] == 3
    assert refined["settings"]["refine_source"] == "onnx2torch", refined["settings"]
    assert refined["metrics"]["psnr"]["mean"] > plain["metrics"]["psnr"]["mean"]  # eq. 2 lowers the error
