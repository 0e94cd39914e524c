"""The web page on a bundle made from a GAN no one here wrote (issue 17): torch-mimicry's SNGAN, inverted from its
torch modules (docs/byo-gan/models/mimicry-sngan). Headless Chromium against a live API, a worker and a real Redis
that serve ONLY a tmp copy of that bundle, as `DFI_MODELS_DIR=… DFI_DEFAULT_MODEL=mimicry-sngan scripts/run.sh` does.

The bundle has what any foreign bundle has — invert, generator and D^f graphs — and none of the zoo's extras: no
classifier, no named directions, no SCGAN outpaint graph, no generator.safetensors (DFI^opt refines through
generator.onnx via onnx2torch). Every panel that applies must work and the others must say why they do not.

With DFI_SCREENSHOTS=1 it also writes docs/byo-gan/page-foreign.png (the whole page).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.embedded_redis import free_port
from service.settings import Settings
from tests.service.conftest import ROOT, decode_png, make_settings, process_env
from tests.service.test_page import browser, missing, shown_error, src, wait  # noqa: F401  (browser: a fixture)

NAME = "mimicry-sngan"
BUNDLE = ROOT / "docs" / "byo-gan" / "models" / NAME
SCREENSHOT = ROOT / "docs" / "byo-gan" / "page-foreign.png"
SAMPLES = ROOT / "service" / "static" / "samples"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(missing),
        reason=f"browser test needs Debian's chromium and chromium-driver: "
        f"{', '.join(missing)} missing (scripts/setup.sh installs them)",
    ),  # fmt: skip
    pytest.mark.skipif(not (BUNDLE / "manifest.json").is_file(), reason=f"{BUNDLE} is not in this checkout"),
]


def foreign_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The process environment of API and worker: only the foreign bundle, and it is the default."""
    return process_env(settings, DFI_MODELS=f'["{NAME}"]', DFI_DEFAULT_MODEL=NAME, **extra)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"API exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"API not ready in {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture
def services(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """Worker + API (`python -m service.worker`, `python -m service`) over a models dir holding only the copy."""
    models = tmp_path / "models"
    shutil.copytree(BUNDLE, models / NAME)  # never served from docs/: the test must not touch the committed bundle
    settings = make_settings(redis_url, models_dir=models, default_model=NAME, models=[NAME])
    port = free_port()
    processes: list[subprocess.Popen] = []
    try:
        for command, env, log in (
            (["-m", "service.worker"], foreign_env(settings), tmp_path / "worker.log"),
            (["-m", "service"], foreign_env(settings, PORT=str(port)), tmp_path / "api.log"),
        ):
            processes.append(subprocess.Popen([sys.executable, *command], env=env, cwd=ROOT, stdout=log.open("ab"),
                                              stderr=subprocess.STDOUT))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, processes[-1], tmp_path / "api.log")
        yield url
    finally:
        for process in reversed(processes):
            process.kill()  # no graceful stop under test here (test_faults.py checks SIGTERM); it cost ~10 s
        for process in processes:
            process.wait(30)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_page_serves_a_foreign_bundle(services: str, browser) -> None:  # noqa: F811
    url = services
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["default_model"] == NAME and ready["models"] == [NAME] and not ready["degraded"], ready
    detail = httpx.get(f"{url}/models/{NAME}").json()
    assert detail["directions"] == [] and not detail["outpaint"] and "classifier" not in detail["graphs"], detail
    assert detail["manifest"]["refinement"] is None  # no generator.safetensors: DFI^opt must come from onnx2torch

    # The bundle is selected, and the Edit panel says it has no named directions (no sliders, no error).
    browser.get(f"{url}/")
    info = wait(browser, lambda d: d.find_element("id", "model-info").text, "the bundle's info line")
    assert browser.find_element("id", "model").get_attribute("value") == NAME
    assert "fashion-mnist · 28×28×1 · latent 128 · 0 directions · refinement available" in info, info
    wait(browser, lambda d: "no named directions" in d.find_element("id", "sliders").text, "the no-directions note")
    assert not browser.find_elements("css selector", "#sliders input[type=range]")

    # Invert a Fashion-MNIST test image from the picker (a shirt): input | DFI | DFI^opt (50 steps, onnx2torch G).
    pick = next(b for b in browser.find_elements("css selector", "#samples .sample")
                if b.get_attribute("title").startswith("shirt "))  # fmt: skip
    shirt_file = pick.get_attribute("data-file")
    pick.click()
    for element_id in ("recon-dfi", "recon-opt"):
        wait(browser, lambda d, e=element_id: src(d, e).startswith("data:image/png;base64,"), element_id, timeout=40)
    assert "(50 steps)" in browser.find_element("id", "opt-steps").text
    shown = {e: decode_png(src(browser, e).split(",", 1)[1]) for e in ("input-img", "recon-dfi", "recon-opt")}
    assert all(image.shape == (28, 28, 1) for image in shown.values()), {k: v.shape for k, v in shown.items()}
    # Eq. 2 from the DFI latent lowers the pixel error: refinement really ran on this bundle's G.
    assert mse(shown["recon-opt"], shown["input-img"]) < mse(shown["recon-dfi"], shown["input-img"])
    latent = [float(v) for v in browser.find_element("id", "latent").get_attribute("value")[1:-1].split(",")]
    direct = httpx.post(f"{url}/invert", files={"images": (shirt_file, (SAMPLES / shirt_file).read_bytes())},
                        timeout=30).json()  # fmt: skip
    assert len(latent) == 128
    np.testing.assert_allclose(latent, direct["results"][0]["latent"], atol=1e-5)

    # Edit: still no sliders, so no /edit call, no edited image and no error.
    assert not src(browser, "edited-img") and not shown_error(browser, "edit-error")

    # Interpolate to a second picked test image: 8 frames; t = 0 is G(ẑ_DFI) of the input, as the DFI panel shows.
    browser.find_element("css selector", "#samples-b .sample").click()
    wait(browser, lambda d: len(d.find_elements("css selector", "#strip img")) == 8, "8 interpolation frames")
    first = browser.find_element("css selector", "#strip img").get_attribute("src").split(",", 1)[1]
    assert np.abs(decode_png(first).astype(int) - shown["recon-dfi"].astype(int)).max() <= 2
    assert not shown_error(browser, "interp-error")

    # Outpaint: the API's 404 (no SCGAN graph in this bundle), shown in the panel; nothing drawn.
    browser.find_element("id", "outpaint").click()
    message = wait(browser, lambda d: shown_error(d, "outpaint-error"), "the outpaint error")
    assert "404" in message and f"model {NAME} has no SCGAN outpaint graph" in message, message
    assert not browser.find_elements("css selector", "#outpaint-results img")

    # Metric job: class consistency is not offered (no classifier graph; the API would refuse it with a 422 —
    # asked directly here), PSNR and SSIM of DFI^opt (5 steps, the worker's onnx2torch G) on 50 test images.
    checkbox = browser.find_element("css selector", "#job-metrics input[value=class_consistency]")
    assert not checkbox.is_enabled() and not checkbox.is_selected()
    assert "no classifier graph" in browser.find_element("id", "job-metrics-note").text
    refused = httpx.post(f"{url}/jobs", json={"model": NAME, "n": 5, "metrics": ["psnr", "class_consistency"]})
    assert refused.status_code == 422 and "has no classifier graph" in refused.json()["error"]["message"]
    for box_id, value in (("job-n", "50"), ("job-refine", "5")):
        box = browser.find_element("id", box_id)
        box.clear()
        box.send_keys(value)
    browser.find_element("id", "job-submit").click()
    wait(browser, lambda d: d.find_element("id", "job-table").is_displayed(), "the job's table", timeout=45)
    rows = {r.get_attribute("data-metric"): r.text for r in browser.find_elements("css selector", "#job-table tr")
            if r.get_attribute("data-metric")}  # fmt: skip
    assert sorted(rows) == ["psnr", "ssim"], rows
    assert " ± " in rows["psnr"] and rows["psnr"].endswith(" 50"), rows
    status = browser.find_element("id", "job-status").text
    assert "complete" in status and "dfi_opt on 50 images" in status, status
    job_id = status.split()[1].rstrip(":")
    job = httpx.get(f"{url}/jobs/{job_id}").json()
    assert job["request"]["metrics"] == ["psnr", "ssim"] and job["result"]["settings"]["refine_source"] == "onnx2torch"
    assert 0 < job["result"]["metrics"]["ssim"]["mean"] < 1, job["result"]

    assert not shown_error(browser, "job-error") and not shown_error(browser, "global-error")
    uncaught = [e["message"] for e in browser.get_log("browser") if "Uncaught" in e["message"]]
    assert not uncaught, uncaught
    if os.environ.get("DFI_SCREENSHOTS") == "1":
        height = browser.execute_script("return document.documentElement.scrollHeight")
        chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
        browser.set_window_size(1400, height + chrome)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(SCREENSHOT))
