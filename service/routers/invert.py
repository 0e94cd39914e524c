"""POST /invert: images → latents (+ reconstructions). JSON (base64 images) or multipart (files)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from pydantic import ValidationError

from service.deps import MetricsDep, RegistryDep, SettingsDep
from service.errors import APIError
from service.images import png_base64
from service.inference import check_refine_steps, decode_and_invert, generate
from service.schemas import InversionPublic, InvertRequest, InvertResponse, Timings

router = APIRouter(tags=["inversion"])

_MULTIPART_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": InvertRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["images"],
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "model": {"type": "string"},
                        "refine_steps": {"type": "integer", "minimum": 0},
                        "return_reconstruction": {"type": "boolean"},
                    },
                }
            },
        },
        "required": True,
    }
}


async def _parse(request: Request, max_files: int) -> tuple[InvertRequest, list[bytes | str]]:
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=max_files + 1, max_fields=16) as form:
                files = [await f.read() for f in form.getlist("images") if hasattr(f, "read")]
                if not files:
                    raise APIError(422, "multipart request needs one or more 'images' file fields")
                fields = {k: v for k, v in form.items() if k != "images" and isinstance(v, str)}
                body = InvertRequest.model_validate({**fields, "images": ["-"] * len(files)})
                return body, list(files)
        if not content_type.startswith("application/json"):
            raise APIError(415, f"send application/json or multipart/form-data, not {content_type or 'no type'!r}")
        body = InvertRequest.model_validate_json(await request.body())
        return body, list(body.images)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
        raise APIError(422, f"invalid request: {problems}") from None


@router.post("/invert", response_model=InvertResponse, openapi_extra=_MULTIPART_DOC)
async def invert(request: Request, registry: RegistryDep, settings: SettingsDep, metrics: MetricsDep) -> InvertResponse:
    """DFI: ẑ = CN(D^f(x)) for each image; with refine_steps > 0, DFI^opt (IJCV eq. 2) from there."""
    start = time.perf_counter()
    body, encoded = await _parse(request, settings.max_images_per_request)
    model = registry.get(body.model)
    if body.refine_steps:
        # Before any decoding: the step limit, torch in this process, then a differentiable G for this bundle (built
        # once, dfi_core.refinement.load_bundle_generator) — a 400 naming, e.g., the op onnx2torch cannot convert.
        check_refine_steps(body.refine_steps, settings)
        await asyncio.to_thread(model.torch_generator)
    timings: dict[str, float] = {}
    _, z = await decode_and_invert(encoded, model, body.refine_steps, settings, metrics, timings)
    images = await generate(model, z, timings) if body.return_reconstruction else None
    method = "dfi_opt" if body.refine_steps else "dfi"
    results = [
        InversionPublic(latent=z[i].tolist(), method=method,
                        reconstruction_png=png_base64(images[i]) if images is not None else None)
        for i in range(len(z))
    ]  # fmt: skip
    timings["total_ms"] = (time.perf_counter() - start) * 1000
    return InvertResponse(model=model.name, results=results, timings=Timings(**timings))
