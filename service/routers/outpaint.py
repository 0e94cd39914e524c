"""POST /outpaint: SCGAN (IJCV sec. 3.3) — a patch → full images. Served only by bundles with an outpaint graph.

The patch is decoded with the same preprocessing as every image, at the bundle's patch size; z_edge for sample k
is row k of N(0, I) drawn by numpy's PCG64 from `seed`, so (patch, seed, samples) always gives the same images.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from fastapi import APIRouter

from dfi_core.bundle import ImageSpec
from service.deps import RegistryDep, SettingsDep
from service.errors import APIError, shown
from service.images import decode_base64, decode_image, png_base64, to_model_input
from service.schemas import OutpaintRequest, OutpaintResponse, OutpaintSample

router = APIRouter(tags=["outpainting"])


@router.post("/outpaint", response_model=OutpaintResponse)
async def outpaint(body: OutpaintRequest, registry: RegistryDep, settings: SettingsDep) -> OutpaintResponse:
    model = registry.get(body.model)
    if body.samples > settings.max_latents_per_request:
        raise APIError(422, f"samples {shown(body.samples)} > max_latents_per_request",
                       limit={"max_latents_per_request": settings.max_latents_per_request})  # fmt: skip
    entry = model.bundle.manifest.graphs.outpaint
    if entry is None or "outpaint" not in model.graphs:
        with_graph = sorted(name for name, m in registry.models.items() if "outpaint" in m.graphs)
        raise APIError(404, f"model {model.name} has no SCGAN outpaint graph; models with one: {with_graph}",
                       limit={"models_with_outpaint": with_graph})  # fmt: skip
    box = entry.patch
    if box.height != box.width:
        raise APIError(422, f"model {model.name}: non-square patches ({box.height}×{box.width}) are not served")
    start = time.perf_counter()
    spec = ImageSpec(channels=model.bundle.manifest.image.channels, height=box.height, width=box.width)
    data = decode_base64(body.patch, "patch", settings.max_image_bytes)
    limits = (settings.max_image_bytes, settings.max_image_pixels)
    array = await asyncio.to_thread(decode_image, data, spec, "patch", *limits)
    patch = np.repeat(to_model_input([array]), body.samples, axis=0)
    z_edge = np.random.default_rng(body.seed).standard_normal((body.samples, entry.z_edge_size)).astype(np.float32)
    images = await asyncio.to_thread(model.graphs["outpaint"], patch, z_edge)
    return OutpaintResponse(
        model=model.name,
        seed=body.seed,
        patch_box=box.model_dump(),
        samples=[
            OutpaintSample(image_png=png_base64(image), z_edge=z.tolist())
            for image, z in zip(images, z_edge, strict=True)
        ],
        total_ms=(time.perf_counter() - start) * 1000,
    )
