"""One thread hop for a small request (service.inference.invert_to_png, issue 20): the same answer as the
batched path, taken only when the graphs are idle and the images small, and a claimed graph still merges the
callers that arrive meanwhile."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.batching import MicroBatcher
from service.images import declared_pixels
from service.inference import ONE_HOP_PIXELS, small_images
from service.registry import LoadedModel
from service.settings import Settings
from tests.service.conftest import decode_png, png_b64, png_bytes


def _encoded(image: np.ndarray, fmt: str) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0]).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_declared_pixels_reads_png_and_jpeg_headers_only() -> None:
    image = np.zeros((20, 30), np.uint8)
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt)
        assert declared_pixels(buffer.getvalue()) == 600, fmt
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="BMP")
    assert declared_pixels(buffer.getvalue()) is None  # other formats always take the batched path
    assert declared_pixels(b"\x89PNG\r\n\x1a\n") is None  # a header cut before IHDR says nothing


def test_small_images_takes_only_few_small_png_or_jpeg(settings: Settings, fashion_test) -> None:
    images = fashion_test.images[:4]
    small = small_images([png_b64(im) for im in images], settings)
    assert small is not None and small == [png_bytes(im) for im in images]
    assert small_images([_encoded(images[0], "BMP")], settings) is None
    assert small_images(["not base64!"], settings) is None  # the batched path names the problem
    # A small file may declare many pixels (a bomb-like PNG of zeros): the declared size decides, not the bytes.
    side = int(np.sqrt(ONE_HOP_PIXELS)) + 1
    big = base64.b64encode(png_bytes(np.zeros((side, side, 1), np.uint8))).decode("ascii")
    assert len(big) < 10_000 and small_images([big], settings) is None
    assert small_images([png_b64(images[0])] * 17, settings) is None  # more than ONE_HOP_IMAGES


def test_one_hop_and_batched_path_give_the_same_bytes(client: TestClient, fashion_test, monkeypatch) -> None:
    hops: list[bool] = []
    run_alone = LoadedModel.run_alone

    async def spy(self, graphs, work):  # noqa: ANN001, ANN202
        result = await run_alone(self, graphs, work)
        hops.append(result is not None)
        return result

    monkeypatch.setattr(LoadedModel, "run_alone", spy)
    images = fashion_test.images[:3]
    # PNG takes the one hop (idle graphs, tiny images); BMP of the same pixels always takes the batched path.
    one_hop = client.post("/invert", json={"images": [png_b64(im) for im in images]}).json()
    assert hops == [True]
    batched = client.post("/invert", json={"images": [_encoded(im, "BMP") for im in images]}).json()
    assert hops == [True]  # BMP never tried it
    for a, b in zip(one_hop["results"], batched["results"], strict=True):
        assert a["latent"] == b["latent"]
        np.testing.assert_array_equal(decode_png(a["reconstruction_png"]), decode_png(b["reconstruction_png"]))
    assert set(one_hop["timings"]) == set(batched["timings"])  # decode, invert, generate and total reported alike


def test_one_hop_counts_its_graph_calls(client: TestClient, fashion_test) -> None:
    def count(graph: str) -> float:
        text = client.get("/metrics").text
        line = next(ln for ln in text.splitlines() if ln.startswith("dfi_inference_rows_total{") and f'graph="{graph}"'
                    in ln and 'model="fashion-mnist"' in ln)  # fmt: skip
        return float(line.rsplit(" ", 1)[1])

    before = count("invert"), count("generator")
    client.post("/invert", json={"images": [png_b64(im) for im in fashion_test.images[:2]]}).raise_for_status()
    assert (count("invert"), count("generator")) == (before[0] + 2, before[1] + 2)


def test_a_claimed_graph_refuses_a_second_claim_and_merges_callers_after_release() -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(lambda x: x + 1, max_batch=64, on_batch=sizes.append)

    async def main() -> tuple[bool, bool, list[np.ndarray]]:
        assert batcher.claim()
        second = batcher.claim()
        waiting = [asyncio.ensure_future(batcher(np.full((n, 1), n, np.float32))) for n in (1, 2, 3)]
        await asyncio.sleep(0.05)
        held = not any(w.done() for w in waiting)  # nobody runs the graph while it is claimed
        batcher.release()
        out = await asyncio.gather(*waiting)
        await batcher.close()
        return second, held, out

    second, held, out = asyncio.run(main())
    assert not second and held
    for n, y in zip((1, 2, 3), out, strict=True):
        np.testing.assert_array_equal(y, np.full((n, 1), n + 1, np.float32))
    assert sizes == [6]  # the three callers that came during the claim were merged into one call


@pytest.mark.parametrize("delay_s, enabled", [(0.002, True), (0.0, False)])
def test_no_claim_where_the_batcher_would_hold_or_is_off(delay_s: float, enabled: bool) -> None:
    batcher = MicroBatcher(lambda x: x, max_delay_s=delay_s, enabled=enabled)
    assert not batcher.claim()
