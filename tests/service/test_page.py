"""The web page (GET / and service/static) in a real browser: headless Debian Chromium driven by selenium through
chromedriver, against a live API process, a worker process and a real Redis, on the shipped fashion-mnist bundle.

With DFI_SCREENSHOTS=1 it also writes docs/service/page-*.png (one per panel and the whole page).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.conftest import ROOT, LiveAPI, decode_png, make_settings, png_b64, png_bytes

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "docs" / "service"
missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(missing),
        reason=f"browser test needs Debian's chromium and chromium-driver: "
        f"{', '.join(missing)} missing (scripts/setup.sh installs them)",
    ),  # fmt: skip
]

NPY_OF_LATENT = """
const done = arguments[arguments.length - 1];
import("/static/npy.js").then((m) => {
  const bytes = m.npyFloat32(JSON.parse(document.getElementById("latent").value));
  done(btoa(String.fromCharCode(...bytes)));
}).catch((e) => done("ERROR " + e));
"""


@pytest.fixture
def browser() -> Iterator:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def wait(driver, condition: Callable, what: str, timeout: float = 30):
    """Poll `condition(driver)` until truthy; on timeout fail with the page's visible errors and console."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition(driver)
        if value:
            return value
        time.sleep(0.05)
    errors = [e.text for e in driver.find_elements("css selector", ".error") if e.is_displayed()]
    console = [entry["message"] for entry in driver.get_log("browser")]
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; page errors {errors}; console {console}")


def src(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).get_attribute("src") or ""


def shown_error(driver, element_id: str) -> str:
    element = driver.find_element("id", element_id)
    return element.text if element.is_displayed() else ""


def screenshots(driver) -> None:
    """docs/service/page-<panel>.png and page-full.png, with the window as tall as the page (nothing clipped)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, height + 200)
    driver.execute_script("window.scrollTo(0, 0)")
    for panel in ("invert", "edit", "interpolate", "outpaint", "jobs"):
        driver.find_element("id", f"panel-{panel}").screenshot(str(SCREENSHOTS / f"page-{panel}.png"))
    chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
    driver.set_window_size(1400, height + chrome)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SCREENSHOTS / "page-full.png"))


def test_page_inverts_edits_interpolates_and_runs_a_job(redis_url, tmp_path, start_worker, browser, fashion_test):
    from selenium.webdriver.common.keys import Keys

    settings = make_settings(redis_url)
    start_worker(settings)  # imports torch while the API loads its bundles
    api = LiveAPI(settings, tmp_path / "api.log")
    try:
        page = httpx.get(f"{api.url}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text[:200]
        assert httpx.get(f"{api.url}/static/app.js").status_code == 200

        # The bundle list and the sliders of its named directions.
        browser.get(f"{api.url}/")
        directions = [d["name"] for d in httpx.get(f"{api.url}/models/fashion-mnist").json()["directions"]]
        sliders = wait(browser, lambda d: d.find_elements("css selector", "#sliders input[type=range]"), "sliders")
        assert sorted(s.get_attribute("data-direction") for s in sliders) == sorted(directions)
        assert browser.find_element("id", "model").get_attribute("value") == "fashion-mnist"

        # Upload a Fashion-MNIST test image (a shirt): DFI and DFI^opt reconstructions, and its latent.
        shirt = fashion_test.images[int(np.flatnonzero(fashion_test.labels == 6)[0])]
        (tmp_path / "shirt.png").write_bytes(png_bytes(shirt))
        browser.find_element("id", "file").send_keys(str(tmp_path / "shirt.png"))
        for element_id in ("recon-dfi", "recon-opt"):
            wait(browser, lambda d, e=element_id: src(d, e).startswith("data:image/png;base64,"), element_id)
        assert src(browser, "input-img").startswith("data:image/png;base64,")
        latent = json.loads(browser.find_element("id", "latent").get_attribute("value"))
        direct = httpx.post(f"{api.url}/invert", json={"images": [png_b64(shirt)]}, timeout=30).json()
        np.testing.assert_allclose(latent, direct["results"][0]["latent"], atol=1e-5)

        # The .npy bytes written in JS load in numpy as the same float32 vector.
        npy = browser.execute_async_script(NPY_OF_LATENT)
        assert not npy.startswith("ERROR"), npy
        array = np.load(io.BytesIO(base64.b64decode(npy)), allow_pickle=False)
        assert array.dtype == np.float32 and array.shape == (64,)
        np.testing.assert_array_equal(array, np.asarray(latent, dtype=np.float32))
        assert browser.find_element("id", "download-npy").is_enabled()

        # Moving a direction slider (keyboard: 10 steps of 0.1) re-renders the edited image through POST /edit.
        before = wait(browser, lambda d: src(d, "edited-img"), "the unedited image")
        slider = browser.find_element("id", "dir-shirt_to_dress")
        slider.send_keys(*[Keys.ARROW_RIGHT] * 10)
        wait(browser, lambda d: src(d, "edited-img") != before, "the edited image to change")
        wait(browser, lambda d: "+1.0 shirt_to_dress" in d.find_element("id", "edited-caption").text, "caption")
        strengths = [{"name": name, "strength": 1.0 if name == "shirt_to_dress" else 0.0} for name in directions]
        expected = httpx.post(f"{api.url}/edit", json={"latents": [latent], "directions": strengths}).json()
        shown = decode_png(src(browser, "edited-img").split(",", 1)[1]).astype(int)
        assert np.abs(shown - decode_png(expected["results"][0]["image_png"]).astype(int)).max() <= 2
        assert np.abs(shown - decode_png(before.split(",", 1)[1]).astype(int)).mean() > 1

        # Interpolation strip to a picked test image; outpainting: the patch in its box and 6 samples, reseedable.
        browser.find_element("css selector", "#samples-b .sample").click()
        wait(browser, lambda d: len(d.find_elements("css selector", "#strip img")) == 8, "8 interpolation frames")
        browser.find_element("id", "outpaint").click()
        wait(browser, lambda d: len(d.find_elements("css selector", "#outpaint-results img")) == 7, "patch + 6 samples")

        def outpainted(d) -> list[str]:
            return [img.get_attribute("src") for img in d.find_elements("css selector", "#outpaint-results img")]

        first = outpainted(browser)
        browser.find_element("id", "outpaint-reseed").click()
        wait(browser, lambda d: outpainted(d) not in ([], first), "new samples after reseeding")

        # A metric job: an invalid n is refused with the API's message, n = 50 runs to its table.
        n_box = browser.find_element("id", "job-n")
        n_box.clear()
        n_box.send_keys("0")
        browser.find_element("id", "job-submit").click()
        message = wait(browser, lambda d: shown_error(d, "job-error"), "the job error")
        assert "422" in message and "n: " in message, message
        n_box.clear()
        n_box.send_keys("50")
        browser.find_element("id", "job-submit").click()
        wait(browser, lambda d: d.find_element("id", "job-table").is_displayed(), "the job's table", timeout=45)
        rows = {r.get_attribute("data-metric"): r.text for r in browser.find_elements("css selector", "#job-table tr")
                if r.get_attribute("data-metric")}  # fmt: skip
        assert sorted(rows) == ["class_consistency", "psnr", "ssim"], rows
        assert " ± " in rows["psnr"] and rows["psnr"].endswith(" 50"), rows
        assert "complete" in browser.find_element("id", "job-status").text
        assert browser.find_element("id", "job-progress").get_attribute("value") == "1"
        assert not shown_error(browser, "job-error") and not shown_error(browser, "global-error")
        assert not browser.find_element("id", "job-per-class-bars").is_displayed()  # not asked for

        # The same job per class (issue 23): one bar per Fashion-MNIST class; the red bars are the classes the caption
        # lists as flagged (the result's `flagged`).
        browser.find_element("id", "job-per-class").click()
        browser.find_element("id", "job-submit").click()
        wait(browser, lambda d: d.find_element("id", "job-per-class-bars").is_displayed(), "per-class bars", timeout=45)
        bars = browser.find_elements("css selector", "#job-per-class-bars .bar")
        assert len(bars) == 10, len(bars)
        shown_flagged = sorted(b.get_attribute("data-class") for b in bars if "flagged" in b.get_attribute("class"))
        caption = browser.find_element("css selector", "#job-per-class-bars figcaption").text
        assert caption.startswith("psnr per class; flagged: "), caption
        listed = caption.removeprefix("psnr per class; flagged: ").split(" — ")[0]
        assert shown_flagged == ([] if listed == "none" else sorted(listed.split(", "))), (shown_flagged, caption)
        if os.environ.get("DFI_SCREENSHOTS") == "1":
            screenshots(browser)

        uncaught = [e["message"] for e in browser.get_log("browser") if "Uncaught" in e["message"]]
        assert not uncaught, uncaught
    finally:
        api.stop()


CHUNKS_TEXT = re.compile(r"^chunks (\d+)/(\d+) done · (\d+) running · workers: (.+)$")
WATCH_CHUNKS = """
window.chunkTexts = [];
const box = document.getElementById("job-chunks");
new MutationObserver(() => {
  const text = box.textContent;
  if (text && text !== window.chunkTexts.at(-1)) window.chunkTexts.push(text);
}).observe(box, { childList: true, characterData: true, subtree: true });
"""


def allow_downloads(driver, folder: Path) -> None:
    """Let headless Chromium save downloads (links with `download`, blob URLs) into `folder`."""
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})


def downloaded(folder: Path, name: str, size: int | None = None) -> Callable:
    """A `wait` condition: the finished download `name` (Chromium writes `.crdownload` first, then renames)."""

    def condition(_driver) -> bytes | None:
        path = folder / name
        if not path.is_file() or (size is not None and path.stat().st_size != size):
            return None
        return path.read_bytes() or None

    return condition


def submit_job(driver, kind: str, n: int) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "job-kind")).select_by_value(kind)
    n_box = driver.find_element("id", "job-n")
    n_box.clear()
    n_box.send_keys(str(n))
    driver.find_element("id", "job-submit").click()


def test_page_runs_an_invert_job_in_chunks_and_downloads_its_npz(redis_url, tmp_path, start_worker, browser,
                                                                 fashion_test):  # fmt: skip
    settings = make_settings(redis_url, job_chunk_images=16)  # n = 30 → 2 chunks (16 is the least)
    worker = start_worker(settings)
    api = LiveAPI(settings, tmp_path / "api.log")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    try:
        allow_downloads(browser, downloads)
        browser.get(f"{api.url}/")
        wait(browser, lambda d: d.find_elements("css selector", "#sliders input[type=range]"), "the bundle to load")

        # The kind choice: invert offers "return reconstructions" instead of the metric checkboxes, and back.
        metrics, recon = browser.find_element("id", "job-metrics"), browser.find_element("id", "job-recon")
        assert metrics.is_displayed() and not recon.is_displayed()
        browser.execute_script(WATCH_CHUNKS)
        submit_job(browser, "invert", 30)
        assert not metrics.is_displayed() and recon.is_displayed() and not recon.is_selected()

        link = wait(browser, lambda d: (e := d.find_element("id", "job-download")).is_displayed() and e, "the download",
                    timeout=90)  # fmt: skip
        status = browser.find_element("id", "job-status").text
        assert "complete" in status and "30 latents, z [30, 64]" in status, status
        assert browser.find_element("id", "job-progress").get_attribute("value") == "1"
        job_id = status.split()[1].rstrip(":")
        job = httpx.get(f"{api.url}/jobs/{job_id}").json()

        # The page sent an invert job (no metrics, no reconstructions asked) and shows its chunks and workers.
        assert job["kind"] == "invert" and job["request"]["return_reconstructions"] is False, job
        assert "metrics" not in job["request"], job["request"]
        chunks = CHUNKS_TEXT.match(browser.find_element("id", "job-chunks").text)
        assert chunks, browser.find_element("id", "job-chunks").text
        done, total, running, workers = int(chunks[1]), int(chunks[2]), int(chunks[3]), chunks[4].split(", ")
        assert done == total == job["chunks"]["total"] == 2 and running == 0, chunks[0]
        assert workers == job["workers"] and any(w.endswith(f"-{worker.process.pid}") for w in workers), workers
        seen = browser.execute_script("return window.chunkTexts")
        # The first render may come before or after the worker took a chunk: 0 or 1 running.
        assert re.fullmatch(r"chunks 0/2 done · [01] running · workers: none yet", seen[0]), seen
        assert seen[-1] == chunks[0], seen

        # The link's target: the .npz (an attachment) with z [30, 64] of the test images "0".."29".
        href = link.get_attribute("href")
        assert href == f"{api.url}{job['result']['download']}" == f"{api.url}/jobs/{job_id}/result", href
        assert link.get_attribute("download") == f"dfi-{job_id}.npz"
        response = httpx.get(href, timeout=30)
        assert response.status_code == 200, response.text[:300]
        assert response.headers["content-disposition"].startswith("attachment"), response.headers
        with np.load(io.BytesIO(response.content), allow_pickle=False) as npz:
            z, names = npz["z"], npz["names"]
            assert "reconstructions" not in npz.files, npz.files
        assert z.shape == (30, 64) and z.dtype == np.float32, (z.shape, z.dtype)
        assert names.tolist() == [str(i) for i in range(30)], names
        direct = httpx.post(f"{api.url}/invert", json={"images": [png_b64(im) for im in fashion_test.images[:2]]},
                            timeout=30).json()  # fmt: skip
        np.testing.assert_allclose(z[:2], [r["latent"] for r in direct["results"]], atol=1e-4)

        # Clicking it saves the same bytes (no key: an ordinary download the browser streams to disk).
        link.click()
        saved = wait(browser, downloaded(downloads, f"dfi-{job_id}.npz", len(response.content)), "the saved .npz")
        assert saved == response.content

        # Back to metrics: the checkboxes return and the next submit hides the old link until its own result.
        submit_job(browser, "metrics", 10)
        assert metrics.is_displayed() and not recon.is_displayed()
        assert not browser.find_element("id", "job-download").is_displayed()
        wait(browser, lambda d: d.find_element("id", "job-table").is_displayed(), "the metric table", timeout=60)
        assert not shown_error(browser, "job-error") and not shown_error(browser, "global-error")
        uncaught = [e["message"] for e in browser.get_log("browser") if "Uncaught" in e["message"]]
        assert not uncaught, uncaught
    finally:
        api.stop()


def test_page_downloads_a_result_with_the_api_key(redis_url, tmp_path, start_worker, browser):
    """A link cannot send X-API-Key: with keys on, the page fetches the result with the key and saves a blob."""
    key = "page-test-key-0123456789"
    settings = make_settings(redis_url)
    start_worker(settings)
    api = LiveAPI(settings, tmp_path / "api.log", DFI_API_KEYS=key)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    try:
        allow_downloads(browser, downloads)
        browser.get(f"{api.url}/")
        wait(browser, lambda d: "401" in shown_error(d, "global-error"), "the missing-key error")
        key_box = browser.find_element("id", "api-key")
        key_box.send_keys(key, "\n")  # change → the key is stored and the bundles load
        wait(browser, lambda d: d.find_elements("css selector", "#sliders input[type=range]"), "the bundle to load")
        submit_job(browser, "metrics", 10)
        link = wait(browser, lambda d: (e := d.find_element("id", "job-download")).is_displayed() and e, "the download",
                    timeout=60)  # fmt: skip
        job_id = browser.find_element("id", "job-status").text.split()[1].rstrip(":")
        href = link.get_attribute("href")
        assert href == f"{api.url}/jobs/{job_id}/result" and link.get_attribute("download") == f"dfi-{job_id}.json"
        assert httpx.get(href).status_code == 401  # what a plain link would get
        expected = httpx.get(href, headers={"x-api-key": key}).json()
        assert expected["n"] == 10 and sorted(expected["metrics"]) == ["class_consistency", "psnr", "ssim"], expected

        link.click()
        saved = wait(browser, downloaded(downloads, f"dfi-{job_id}.json"), "the saved .json")
        assert json.loads(saved) == expected
        assert not shown_error(browser, "job-error")
    finally:
        api.stop()
