"""POST /invert: images → latents (+ reconstructions). JSON (base64 images) or multipart (files)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from service.deps import MetricsDep, RegistryDep, SettingsDep
from service.errors import JSON_TYPE, APIError, is_json_type, json_object, unsupported_media_type
from service.inference import Deadline, check_refine_steps, invert_to_png
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


@contextlib.asynccontextmanager
async def _form(request: Request, max_files: int) -> AsyncIterator[FormData]:
    """request.form, with python-multipart's "Too many files" (a 400 that named max_files, one more than the
    setting) answered as the JSON route answers too many images: 413 naming max_images_per_request."""
    try:
        form = await request.form(max_files=max_files, max_fields=16)
    except HTTPException as error:
        if error.status_code == 400 and str(error.detail).startswith("Too many files"):
            raise APIError(413, f"more than {max_files} images > max_images_per_request (DFI_MAX_IMAGES_PER_REQUEST)",
                           limit={"max_images_per_request": max_files}) from None  # fmt: skip
        raise
    try:
        yield form
    finally:
        await form.close()


async def _parse(request: Request, max_files: int) -> tuple[InvertRequest, list[bytes | str]]:
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            async with _form(request, max_files) as form:
                files = [await f.read() for f in form.getlist("images") if hasattr(f, "read")]
                if not files:
                    raise APIError(422, "multipart request needs one or more 'images' file fields")
                fields = {k: v for k, v in form.items() if k != "images" and isinstance(v, str)}
                body = InvertRequest.model_validate({**fields, "images": ["-"] * len(files)})
                return body, list(files)
        if not is_json_type(content_type):
            raise unsupported_media_type(content_type, [JSON_TYPE, "multipart/form-data"])
        # errors.json_object: the answers every JSON route gives (415, "invalid JSON: … at position N", "the JSON
        # body must be an object with the fields …"); parsed by json like FastAPI's routes (+25 ms on 18 MiB).
        body = InvertRequest.model_validate(json_object(await request.body(), InvertRequest))
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
    # The deadline counts this request's work (DFI_REQUEST_DEADLINE_S): from here, after the body is read (bounded
    # by max_body_bytes) and G is built (once per process, warmed at start-up: not this request's work).
    deadline = Deadline(settings.request_deadline_s)
    timings: dict[str, float] = {}
    z, pngs = await invert_to_png(encoded, model, body.refine_steps, settings, metrics, timings, deadline,
                                  body.return_reconstruction)  # fmt: skip
    method = "dfi_opt" if body.refine_steps else "dfi"
    results = [
        InversionPublic(latent=z[i].tolist(), method=method, reconstruction_png=pngs[i] if pngs is not None else None)
        for i in range(len(z))
    ]
    timings["total_ms"] = (time.perf_counter() - start) * 1000
    return InvertResponse(model=model.name, results=results, timings=Timings(**timings))
