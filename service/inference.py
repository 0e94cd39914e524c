"""What /invert and /edit share: images → ẑ (DFI, optionally refined) → G(ẑ), with timings.

Every request runs under a `Deadline` (DFI_REQUEST_DEADLINE_S, 0: none). It is checked cooperatively, between units
of work, in the thread doing the work: before each image while decoding, before each Adam step while refining
(dfi_core.refinement.refine's callback), and before each graph call. An expired deadline raises the 413 (429 while
queued behind other requests' refinement) in that thread, so the work stops there — the answer is the work stopping,
never a timer racing a thread that keeps the CPU busy after the client got its answer. The overshoot is at most one
unit: one image's decode (~65 ms for 2000×2000 here, a few hundred ms at max_image_pixels) or one Adam step over the
request's images (30-170 ms for 64 Fashion-MNIST or emoji images here). ONNX Runtime calls are not interrupted, only
preceded by a check: one merged call is short (256 emoji images, the largest: invert ~0.25 s, generator ~0.35 s on 2
cores here), and RunOptions.terminate would abort every other request merged into the same micro-batch with it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from service.errors import APIError
from service.images import declared_pixels, decode_base64, decode_image, png_base64, to_model_input
from service.metrics import ApiMetrics
from service.refinement import refine_latents, require_torch
from service.registry import GraphCall, LoadedModel
from service.settings import Settings

T = TypeVar("T")

FEWER_IMAGES = "send fewer or smaller images"
FEWER_STEPS = "send fewer images or fewer refine_steps (or refine them in a job: POST /jobs)"
BUSY = "other refinements kept this server busy; retry later, or refine the images in a job (POST /jobs)"
# A request this small (PNG/JPEG, declared pixels of all its images together) is decoded in the graph's thread,
# in the same hop as invert and generator (`invert_to_png`): 2^18 pixels decode in ~2 ms here, so it
# holds the graph no longer than one merged call does. Anything larger, or any other format, decodes in its own
# thread while the graphs serve others.
ONE_HOP_PIXELS = 1 << 18
ONE_HOP_IMAGES = 16


class Abandoned(Exception):  # noqa: N818 — a state, not an error anyone sees
    """Raised in a worker thread whose request is gone (its coroutine was cancelled): nobody reads it."""


class Deadline:
    """The work one request may take: `seconds` from its creation (0: none). Checked by the thread doing the
    work (`check`), which stops by raising; `abandon` (the request's coroutine was cancelled, e.g. the client went
    away) makes the next check stop the thread too."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self._abandoned = threading.Event()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return bool(self.seconds) and self.elapsed() > self.seconds

    def abandon(self) -> None:
        self._abandoned.set()

    def error(self, where: str, advice: str, status: int = 413) -> APIError:
        lead = "needs more than" if status == 413 else "could not finish within"
        return APIError(status, f"the request {lead} request_deadline_s = {self.seconds:g} s of work "
                        f"(DFI_REQUEST_DEADLINE_S; stopped {where}, {self.elapsed():.1f} s in): {advice}",
                        limit={"request_deadline_s": self.seconds})  # fmt: skip

    def check(self, where: str, advice: str, status: int = 413) -> None:
        if self._abandoned.is_set():
            raise Abandoned(where)
        if self.expired():
            raise self.error(where, advice, status)


async def in_thread(deadline: Deadline, function: Callable[..., T], *args: object) -> T:
    """asyncio.to_thread, but a cancelled caller abandons the deadline: the thread stops at its next check instead
    of running to the end for nobody (to_thread cannot stop a thread by itself)."""
    try:
        return await asyncio.to_thread(function, *args)
    except asyncio.CancelledError:
        deadline.abandon()
        raise


def check_count(count: int, limit: int, what: str, setting: str) -> None:
    if count > limit:
        raise APIError(413, f"{count} {what} > {setting}", limit={setting: limit})


def check_refine_steps(refine_steps: int, settings: Settings) -> None:
    if refine_steps > settings.max_refine_steps:
        raise APIError(422, f"refine_steps {refine_steps} > max_refine_steps",
                       limit={"max_refine_steps": settings.max_refine_steps})  # fmt: skip
    if refine_steps:
        require_torch()


def decode_all(encoded: list[bytes | str], model: LoadedModel, settings: Settings,
               deadline: Deadline | None = None) -> list[np.ndarray]:  # fmt: skip
    check_count(len(encoded), settings.max_images_per_request, "images", "max_images_per_request")
    arrays = []
    for i, item in enumerate(encoded):
        if deadline is not None:
            deadline.check(f"before decoding image {i} of {len(encoded)}", FEWER_IMAGES)
        what = f"image {i}"
        data = decode_base64(item, what, settings.max_image_bytes) if isinstance(item, str) else item
        arrays.append(decode_image(data, model.bundle.manifest.image, what, settings.max_image_bytes,
                                   settings.max_image_pixels))  # fmt: skip
    return arrays


async def invert(model: LoadedModel, x: np.ndarray, refine_steps: int, settings: Settings, metrics: ApiMetrics,
                 timings: dict[str, float], deadline: Deadline | None = None) -> np.ndarray:  # fmt: skip
    """x [N, C, H, W] float32 [-1, 1] → ẑ [N, |z|] (refined when refine_steps > 0)."""
    check_refine_steps(refine_steps, settings)
    deadline = Deadline(settings.request_deadline_s) if deadline is None else deadline
    deadline.check("before inverting", FEWER_IMAGES)
    start = time.perf_counter()
    z = await model.run("invert", x)
    timings["invert_ms"] = (time.perf_counter() - start) * 1000
    if refine_steps:
        start = time.perf_counter()
        generator = await asyncio.to_thread(model.torch_generator)
        z = await in_thread(deadline, _refine, generator, x, z, refine_steps, settings.torch_threads, deadline)
        metrics.refinements.labels(model.name).inc(len(z))
        timings["refine_ms"] = (time.perf_counter() - start) * 1000
    return z


def _refine(generator, x: np.ndarray, z: np.ndarray, steps: int, threads: int | None,  # noqa: ANN001
            deadline: Deadline) -> np.ndarray:  # fmt: skip
    def wait(waited: float) -> None:
        # Queued behind other requests' refinement (one at a time, service.refinement._lock): this server is busy,
        # the request is not too large — 429 (retry later), not the 413 of a request that is itself too much work.
        deadline.check(f"waiting {waited:.1f} s for other requests' refinement", BUSY, status=429)

    def step(done: int) -> None:
        where = f"after refinement step {done} of {steps}" if done else f"before the first of {steps} refinement steps"
        deadline.check(f"{where} on {len(x)} images", FEWER_STEPS)

    return refine_latents(generator, x, z, steps, threads, step=step, wait=wait)


async def generate(model: LoadedModel, z: np.ndarray, timings: dict[str, float],
                   deadline: Deadline | None = None) -> np.ndarray:  # fmt: skip
    if deadline is not None:
        deadline.check("before generating the reconstructions", FEWER_IMAGES)
    start = time.perf_counter()
    images = await model.run("generator", z.astype(np.float32, copy=False))
    timings["generate_ms"] = timings.get("generate_ms", 0.0) + (time.perf_counter() - start) * 1000
    return images


async def decode_and_invert(
    encoded: list[bytes | str],
    model: LoadedModel,
    refine_steps: int,
    settings: Settings,
    metrics: ApiMetrics,
    timings: dict[str, float],
    deadline: Deadline | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`deadline` None: one starts here from settings.request_deadline_s (so every caller has one)."""
    check_refine_steps(refine_steps, settings)  # limits first, before any decoding work
    deadline = Deadline(settings.request_deadline_s) if deadline is None else deadline
    start = time.perf_counter()
    arrays = await in_thread(deadline, decode_all, encoded, model, settings, deadline)
    x = to_model_input(arrays)
    timings["decode_ms"] = (time.perf_counter() - start) * 1000
    return x, await invert(model, x, refine_steps, settings, metrics, timings, deadline)


def small_images(encoded: list[bytes | str], settings: Settings) -> list[bytes] | None:
    """The request's images as bytes when they are few and small enough for one hop (ONE_HOP_*), else None.
    Costs only base64 decoding of images that small (the hop would do it anyway) and a read of their headers."""
    if len(encoded) > min(ONE_HOP_IMAGES, settings.max_images_per_request):
        return None
    images, pixels = [], 0
    for i, item in enumerate(encoded):
        if len(item) > ONE_HOP_PIXELS:  # a small image's file is smaller than its pixel count here
            return None
        try:
            data = decode_base64(item, f"image {i}", settings.max_image_bytes) if isinstance(item, str) else item
        except APIError:
            return None  # the batched path names it, in the order it finds the request's problems
        declared = declared_pixels(data)
        if declared is None:
            return None
        pixels += declared
        if pixels > ONE_HOP_PIXELS:
            return None
        images.append(data)
    return images


async def invert_to_png(
    encoded: list[bytes | str],
    model: LoadedModel,
    refine_steps: int,
    settings: Settings,
    metrics: ApiMetrics,
    timings: dict[str, float],
    deadline: Deadline,
    reconstruct: bool,
) -> tuple[np.ndarray, list[str] | None]:
    """/invert's work: ẑ [N, |z|] and, when `reconstruct`, G(ẑ) as base64 PNGs. A small unrefined request whose
    graphs are idle runs decode → invert → generator → PNG encode in one thread hop (`LoadedModel.run_alone`):
    the same calls on the same arrays as the batched path, so the same bytes back, and the event loop is free
    meanwhile. Otherwise (busy graphs, refinement, large images) the batched path, where concurrent requests are
    merged."""
    small = small_images(encoded, settings) if not refine_steps else None
    if small is not None:
        graphs = ("invert", "generator") if reconstruct else ("invert",)

        def one_hop(call: GraphCall) -> tuple[np.ndarray, list[str] | None]:
            start = time.perf_counter()
            x = to_model_input(decode_all(small, model, settings, deadline))
            timings["decode_ms"] = (time.perf_counter() - start) * 1000
            deadline.check("before inverting", FEWER_IMAGES)
            start = time.perf_counter()
            z = call("invert", x)
            timings["invert_ms"] = (time.perf_counter() - start) * 1000
            if not reconstruct:
                return z, None
            deadline.check("before generating the reconstructions", FEWER_IMAGES)
            start = time.perf_counter()
            images = call("generator", z.astype(np.float32, copy=False))
            timings["generate_ms"] = (time.perf_counter() - start) * 1000
            return z, [png_base64(image) for image in images]

        try:
            result = await model.run_alone(graphs, one_hop)
        except asyncio.CancelledError:
            deadline.abandon()
            raise
        if result is not None:
            return result
    _, z = await decode_and_invert(encoded, model, refine_steps, settings, metrics, timings, deadline)
    if not reconstruct:
        return z, None
    return z, [png_base64(image) for image in await generate(model, z, timings, deadline)]
