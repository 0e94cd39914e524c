"""Metric jobs: POST /jobs (a data set split) or POST /jobs/upload (a zip of images) → 202 + id;
GET /jobs/{id} (status, progress, result); DELETE /jobs/{id} cancels."""

from __future__ import annotations

import asyncio
import io
import lzma
import struct
import zipfile
import zlib
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from saq import Job

from service.deps import MetricsDep, QueueDep, RegistryDep, SettingsDep
from service.errors import APIError
from service.images import decode_image
from service.jobs import encode_images
from service.registry import LoadedModel
from service.schemas import JobCreate, JobPublic
from service.settings import Settings

router = APIRouter(prefix="/jobs", tags=["jobs"])
JOB_ID = r"^[0-9a-f]{32}$"


def public(job: Job) -> JobPublic:
    request = {k: v for k, v in (job.kwargs or {}).items() if k != "images_npz"}
    return JobPublic(
        id=job.key,
        status=job.status.value,
        progress=round(job.progress, 4),
        model=request.get("model"),
        created=job.queued / 1000 or None,
        started=job.started / 1000 or None,
        completed=job.completed / 1000 or None,
        attempts=job.attempts,
        result=job.result,
        error=(job.error or "").strip().splitlines()[-1] if job.error else None,
        request=request,
    )


def _check(body: JobCreate, model: LoadedModel, settings: Settings, uploaded: bool) -> dict[str, Any]:
    if body.n > settings.max_job_images:
        raise APIError(413, f"n = {body.n} > max_job_images", limit={"max_job_images": settings.max_job_images})
    if body.refine_steps > settings.max_refine_steps:
        raise APIError(422, f"refine_steps {body.refine_steps} > max_refine_steps",
                       limit={"max_refine_steps": settings.max_refine_steps})  # fmt: skip
    own = model.bundle.manifest.dataset.name
    dataset = body.dataset or own
    if not uploaded and dataset != own:
        raise APIError(422, f"model {model.name} was trained on {own}; score it on {own}, not {dataset}")
    if "class_consistency" in body.metrics and "classifier" not in model.graphs:
        raise APIError(422, f"model {model.name} has no classifier graph: class_consistency is unavailable")
    values = body.model_dump()
    return {**values, "model": model.name, "dataset": None if uploaded else dataset}


def _accepted(job: Job) -> JSONResponse:
    payload = public(job).model_dump()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/jobs/{job.key}"})


@router.post("", status_code=202, response_model=JobPublic)
async def create_job(body: JobCreate, registry: RegistryDep, queue: QueueDep, settings: SettingsDep,
                     metrics: MetricsDep) -> JSONResponse:  # fmt: skip
    """Score the bundle's DFI (or DFI^opt) on the first n images of a data set split (the ICLR metric)."""
    kwargs = _check(body, registry.get(body.model), settings, uploaded=False)
    job = await queue.submit(kwargs)
    metrics.jobs_submitted.inc()
    return _accepted(job)


# What zipfile raises for a damaged entry: BadZipFile (bad CRC — also what a lying declared size ends in, since
# reading stops at the declared size —, a local header that disagrees with the directory), zlib.error (a corrupt
# deflate stream), lzma.LZMAError / struct.error (a garbage LZMA stream or its properties header), OSError (bz2's
# "Invalid data stream"), EOFError (a stream that ends early), ValueError (offsets that point before the file's
# start: "negative seek value"). On an in-memory archive all are the client's bytes, never our bug: 422.
_CORRUPT_ENTRY = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, struct.error, OSError, EOFError, ValueError)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """One entry's bytes, or a 422 naming the entry and what is wrong with it."""
    where = f"archive: {info.filename}"
    if info.flag_bits & 0x1:  # zipfile would raise RuntimeError("... password required"): say so up front
        raise APIError(422, f"{where}: encrypted entries are not supported; zip it without a password")
    try:
        with archive.open(info) as member:
            return member.read(limit + 1)  # at most the declared size (≤ limit, checked above) — never past it
    except NotImplementedError as error:  # Deflate64 (method 9) and the like; patched data, strong encryption
        raise APIError(422, f"{where}: compression method {info.compress_type} or flags {info.flag_bits:#x} "
                            f"not supported ({error}); zip it with stored or deflate") from None  # fmt: skip
    except _CORRUPT_ENTRY as error:
        raise APIError(422, f"{where}: corrupt zip entry ({error or type(error).__name__})") from None


def _read_archive(data: bytes, model: LoadedModel, settings: Settings) -> np.ndarray:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX")]
        members.sort(key=lambda info: info.filename)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, struct.error, OSError, EOFError, ValueError,
            NotImplementedError) as error:  # fmt: skip
        # A damaged central directory can surface as any of these (a negative seek is ValueError; a garbled
        # "version needed to extract" is NotImplementedError("zip file version 21.9")).
        raise APIError(415, f"archive: not a zip file this server can read ({error})") from None
    if not members:
        raise APIError(422, "archive: holds no files")
    if len(members) > settings.max_job_images:
        raise APIError(413, f"archive: {len(members)} files > max_job_images",
                       limit={"max_job_images": settings.max_job_images})  # fmt: skip
    images = []
    for info in members:
        if info.file_size > settings.max_image_bytes:  # checked before inflating: zip bombs stop here
            raise APIError(413, f"archive: {info.filename} inflates to {info.file_size} bytes > max_image_bytes",
                           limit={"max_image_bytes": settings.max_image_bytes})  # fmt: skip
        content = _read_member(archive, info, settings.max_image_bytes)
        images.append(decode_image(content, model.bundle.manifest.image, f"archive: {info.filename}",
                                   settings.max_image_bytes, settings.max_image_pixels))  # fmt: skip
    return np.stack(images)


@router.post("/upload", status_code=202, response_model=JobPublic)
async def create_upload_job(
    request: Request, registry: RegistryDep, queue: QueueDep, settings: SettingsDep, metrics: MetricsDep,
    archive: Annotated[UploadFile, File(description="a .zip of images (PNG, JPEG, ...)")],
    model: Annotated[str | None, Form()] = None,
    metrics_list: Annotated[str, Form(alias="metrics", description="comma-separated")] = "psnr,ssim",
    refine_steps: Annotated[int, Form()] = 0,
) -> JSONResponse:  # fmt: skip
    """Score the bundle's DFI on your own images (uploaded as a zip; labels unknown, so no class_consistency)."""
    data = await archive.read(settings.max_job_upload_bytes + 1)
    if len(data) > settings.max_job_upload_bytes:
        raise APIError(413, "archive larger than max_job_upload_bytes",
                       limit={"max_job_upload_bytes": settings.max_job_upload_bytes})  # fmt: skip
    # FastAPI reads an empty form value as absent (so as the default metrics): an explicit `metrics=` is an empty
    # list, refused like `{"metrics": []}` on POST /jobs rather than quietly scored with psnr, ssim.
    if (await request.form()).get("metrics") == "":
        metrics_list = ""
    try:
        body = JobCreate(model=model, metrics=[m.strip() for m in metrics_list.split(",") if m.strip()],
                         refine_steps=refine_steps, n=settings.max_job_images)  # fmt: skip
    except ValidationError as error:
        # Name the form field (e.g. "metrics: ...") as the JSON route's 422 does, not only pydantic's message.
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "request"
        raise APIError(422, f"invalid job: {where}: {first['msg']}") from None
    loaded = registry.get(body.model)
    images = await asyncio.to_thread(_read_archive, data, loaded, settings)
    kwargs = _check(body, loaded, settings, uploaded=True)
    kwargs.update(n=len(images), images_npz=encode_images(images, None), dataset=None)
    job = await queue.submit(kwargs)
    metrics.jobs_submitted.inc()
    return _accepted(job)


def _job_id(job_id: str) -> str:
    import re

    if not re.match(JOB_ID, job_id):
        raise APIError(422, "a job id is 32 lowercase hex characters")
    return job_id


@router.get("/{job_id}", response_model=JobPublic)
async def get_job(job_id: str, queue: QueueDep) -> JobPublic:
    return public(await queue.get(_job_id(job_id)))


@router.delete("/{job_id}", response_model=JobPublic)
async def cancel_job(job_id: str, queue: QueueDep) -> JobPublic:
    return public(await queue.cancel(_job_id(job_id)))
