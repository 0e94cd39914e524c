"""What /invert and /edit share: images → ẑ (DFI, optionally refined) → G(ẑ), with timings."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from service.errors import APIError
from service.images import decode_base64, decode_image, to_model_input
from service.metrics import ApiMetrics
from service.refinement import refine_latents, require_torch
from service.registry import LoadedModel
from service.settings import Settings


def check_count(count: int, limit: int, what: str, setting: str) -> None:
    if count > limit:
        raise APIError(413, f"{count} {what} > {setting}", limit={setting: limit})


def check_refine_steps(refine_steps: int, settings: Settings) -> None:
    if refine_steps > settings.max_refine_steps:
        raise APIError(422, f"refine_steps {refine_steps} > max_refine_steps",
                       limit={"max_refine_steps": settings.max_refine_steps})  # fmt: skip
    if refine_steps:
        require_torch()


def decode_all(encoded: list[bytes | str], model: LoadedModel, settings: Settings) -> list[np.ndarray]:
    check_count(len(encoded), settings.max_images_per_request, "images", "max_images_per_request")
    arrays = []
    for i, item in enumerate(encoded):
        what = f"image {i}"
        data = decode_base64(item, what, settings.max_image_bytes) if isinstance(item, str) else item
        arrays.append(decode_image(data, model.bundle.manifest.image, what, settings.max_image_bytes,
                                   settings.max_image_pixels))  # fmt: skip
    return arrays


async def invert(model: LoadedModel, x: np.ndarray, refine_steps: int, settings: Settings, metrics: ApiMetrics,
                 timings: dict[str, float]) -> np.ndarray:  # fmt: skip
    """x [N, C, H, W] float32 [-1, 1] → ẑ [N, |z|] (refined when refine_steps > 0)."""
    check_refine_steps(refine_steps, settings)
    start = time.perf_counter()
    z = await model.run("invert", x)
    timings["invert_ms"] = (time.perf_counter() - start) * 1000
    if refine_steps:
        start = time.perf_counter()
        generator = await asyncio.to_thread(model.torch_generator)
        z = await asyncio.to_thread(refine_latents, generator, x, z, refine_steps, settings.torch_threads)
        metrics.refinements.labels(model.name).inc(len(z))
        timings["refine_ms"] = (time.perf_counter() - start) * 1000
    return z


async def generate(model: LoadedModel, z: np.ndarray, timings: dict[str, float]) -> np.ndarray:
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
) -> tuple[np.ndarray, np.ndarray]:
    check_refine_steps(refine_steps, settings)  # limits first, before any decoding work
    start = time.perf_counter()
    arrays = await asyncio.to_thread(decode_all, encoded, model, settings)
    x = to_model_input(arrays)
    timings["decode_ms"] = (time.perf_counter() - start) * 1000
    return x, await invert(model, x, refine_steps, settings, metrics, timings)
