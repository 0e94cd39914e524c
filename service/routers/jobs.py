"""Jobs: POST /jobs (a data-set split) or POST /jobs/upload (a zip or tar of images) → 202 + Location;
GET /jobs/{id} (status, progress over chunks, workers); GET /jobs/{id}/result (the .npz of an invert job, the
JSON of a metric job); DELETE /jobs/{id} cancels every chunk."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.chunks import JobSpec, chunk_images, make_plan
from service.deps import MetricsDep, QueueDep, RegistryDep, SettingsDep, StoreDep
from service.errors import APIError
from service.queue import JobQueue
from service.registry import LoadedModel
from service.schemas import JobCreate, JobPublic
from service.settings import Settings
from service.sources import ArchiveLimits, SplitSource, inspect_archive
from service.store import JobFolder, ResultStore, StoreError, store_error

router = APIRouter(prefix="/jobs", tags=["jobs"])
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
UPLOAD_FIELDS = {"kind", "model", "metrics", "refine_steps", "batch_size", "return_reconstructions", "per_class"}
MAX_FIELD_BYTES = 4096


def _check(body: JobCreate, model: LoadedModel, settings: Settings, uploaded: bool) -> None:
    if not uploaded and body.n > settings.max_job_images:
        raise APIError(413, f"n = {body.n} > max_job_images", limit={"max_job_images": settings.max_job_images})
    if body.refine_steps > settings.max_refine_steps:
        raise APIError(422, f"refine_steps {body.refine_steps} > max_refine_steps",
                       limit={"max_refine_steps": settings.max_refine_steps})  # fmt: skip
    own = model.bundle.manifest.dataset.name
    if not uploaded and (body.dataset or own) != own:
        raise APIError(422, f"model {model.name} was trained on {own}; use {own}, not {body.dataset}")
    if body.kind == "metrics" and "class_consistency" in body.metrics and "classifier" not in model.graphs:
        raise APIError(422, f"model {model.name} has no classifier graph: class_consistency is unavailable")


def _echo(body: JobCreate, exclude: set[str]) -> dict[str, Any]:
    """The request as the job's `request` shows it: only the fields of its kind."""
    other = {"return_reconstructions"} if body.kind == "metrics" else {"metrics"}
    return body.model_dump(exclude=exclude | other)


def _spec(body: JobCreate) -> JobSpec:
    metrics = tuple(body.metrics) if body.kind == "metrics" else ()
    return JobSpec(
        body.kind, body.refine_steps, body.batch_size, metrics, body.return_reconstructions, per_class=body.per_class
    )


def _new_folder(store: ResultStore, job_id: str, settings: Settings, kind: str) -> JobFolder:
    # Expires (if nothing finishes it) after the longest a job may wait and run plus the result TTL.
    expires = time.time() + settings.job_timeout_s + settings.job_result_ttl_s
    try:
        return store.create(job_id, expires, {"kind": kind, "created": time.time()})
    except StoreError as error:
        raise APIError(507, str(error)) from None


async def _submit(queue: JobQueue, store: ResultStore, folder: JobFolder, job_id: str, plan: dict[str, Any],
                  request: dict[str, Any]) -> JSONResponse:  # fmt: skip
    try:
        folder.write_json(folder.plan, plan)
    except StoreError as error:
        store.remove(job_id)
        raise APIError(507, str(error)) from None
    try:
        job = await queue.submit(job_id, plan, request)
    except APIError:
        store.remove(job_id)
        raise
    payload = JobPublic(**job).model_dump()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/jobs/{job_id}"})


@router.post("", status_code=202, response_model=JobPublic)
async def create_job(body: JobCreate, registry: RegistryDep, queue: QueueDep, store: StoreDep,
                     settings: SettingsDep, metrics: MetricsDep) -> JSONResponse:  # fmt: skip
    """Invert (`kind: invert`) or score (`kind: metrics`, the ICLR metric) the first n images of a data-set split."""
    model = registry.get(body.model)
    _check(body, model, settings, uploaded=False)
    await queue.require_up()
    dataset = body.dataset or model.bundle.manifest.dataset.name
    spec = _spec(body)
    source = {"type": "split", "dataset": dataset, "split": body.split, "n": body.n}
    try:
        count = (await asyncio.to_thread(SplitSource, dataset, body.split, body.n)).count
    except (OSError, ValueError):
        # The data set lives on the workers (compose mounts it there only): plan n; chunks past the split's end
        # read nothing.
        count = body.n
    job_id = uuid.uuid4().hex
    folder = _new_folder(store, job_id, settings, body.kind)
    plan = make_plan(spec, model, source, count, chunk_images(settings.job_chunk_images, body.refine_steps))
    request = {**_echo(body, set()), "model": model.name, "dataset": dataset, "n": count}
    response = await _submit(queue, store, folder, job_id, plan, request)
    metrics.jobs_submitted.inc()
    return response


class _UploadReceiver:
    """Streams a multipart body with python-multipart's parser: the `archive` part goes straight into the job's
    folder in the result store, counted while it streams; the few small form fields are kept in memory.
    (Starlette's form parser would spool the file to the system temp folder first — often a small tmpfs in
    containers — and copy it again; this writes it once, where the workers read it.)"""

    def __init__(self, target: Path, limit: int) -> None:
        self.target, self.limit = target, limit
        self.fields: dict[str, str] = {}
        self.archive_bytes = 0
        self.archive_seen = False
        self._file: BinaryIO | None = None
        self._name: str | None = None
        self._header, self._value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]
        self._check_header()

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        self._check_header()

    def _check_header(self) -> None:
        # Part headers are held in memory: a hostile client could stream gigabytes of one "header" otherwise.
        if len(self._header) + len(self._value) > MAX_FIELD_BYTES:
            raise APIError(413, f"upload: a part header longer than {MAX_FIELD_BYTES} bytes")

    def _on_header_end(self) -> None:
        self._headers[self._header.lower()] = self._value
        self._header, self._value = b"", b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._name, self._headers = name, {}
        if name == "archive":
            if self.archive_seen:
                raise APIError(422, "upload: send one `archive` part, not several")
            self.archive_seen = True
            self._file = self.target.open("wb")
        elif name not in UPLOAD_FIELDS:
            raise APIError(422, f"upload: unknown form field {name[:60]!r}; expected archive and any of "
                                f"{sorted(UPLOAD_FIELDS)}")  # fmt: skip
        elif name in self.fields:
            raise APIError(422, f"upload: form field {name!r} given twice")
        self._data = bytearray()

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.archive_bytes += end - start
            if self.archive_bytes > self.limit:
                raise APIError(413, "archive larger than max_job_upload_bytes",
                               limit={"max_job_upload_bytes": self.limit})  # fmt: skip
            self._file.write(data[start:end])
        else:
            self._data += data[start:end]
            if len(self._data) > MAX_FIELD_BYTES:
                raise APIError(413, f"upload: form field {self._name!r} longer than {MAX_FIELD_BYTES} bytes")

    def _on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name is not None:
            self.fields[self._name] = self._data.decode("utf-8", "replace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    async def receive(self, request: Request) -> None:
        kind, options = parse_options_header(request.headers.get("content-type", ""))
        if kind != b"multipart/form-data" or not options.get(b"boundary"):
            raise APIError(415, "upload: send multipart/form-data with the archive in a part named `archive`")
        callbacks = {
            "on_header_field": self._on_header_field, "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end, "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data, "on_part_end": self._on_part_end,
        }  # fmt: skip
        parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
        try:
            async for block in request.stream():
                parser.write(block)
            parser.finalize()
        except APIError:
            raise
        except OSError as error:
            raise APIError(507, str(store_error(error, self.target) or error)) from None
        except Exception as error:  # python-multipart's MultipartParseError and friends: the client's bytes
            raise APIError(422, f"upload: malformed multipart body ({error})") from None
        finally:
            self.close()
        if not self.archive_seen:
            raise APIError(422, "upload: no `archive` part (a zip or tar of images)")


def _form_body(fields: dict[str, str], settings: Settings) -> JobCreate:
    values: dict[str, Any] = {k: v for k, v in fields.items() if k != "metrics"}
    if "metrics" in fields:
        # An explicit empty `metrics=` is an empty list, refused like {"metrics": []} on POST /jobs.
        values["metrics"] = [m.strip() for m in fields["metrics"].split(",") if m.strip()]
    for name in ("return_reconstructions", "per_class"):
        if name in values:
            flag = values[name].strip().lower()
            if flag not in ("true", "false", "1", "0"):
                raise APIError(422, f"invalid job: {name}: give true or false")
            values[name] = flag in ("true", "1")
    try:
        return JobCreate(**values, n=settings.max_job_images)
    except ValidationError as error:
        # Name the form field (e.g. "metrics: ...") as the JSON route's 422 does, not only pydantic's message.
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "request"
        raise APIError(422, f"invalid job: {where}: {first['msg']}") from None


@router.post("/upload", status_code=202, response_model=JobPublic,
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["archive"], "properties": {
                     "archive": {"type": "string", "format": "binary", "description": "zip or tar (.gz/.bz2/.xz)"},
                     "kind": {"type": "string", "enum": ["metrics", "invert"], "default": "metrics"},
                     "model": {"type": "string"}, "metrics": {"type": "string", "description": "comma-separated"},
                     "refine_steps": {"type": "integer", "minimum": 0},
                     "batch_size": {"type": "integer", "minimum": 1, "maximum": 4096},
                     "return_reconstructions": {"type": "boolean"},
                     "per_class": {"type": "boolean", "description": "refused: uploads carry no labels"},
                 }}}}}})  # fmt: skip
async def create_upload_job(request: Request, registry: RegistryDep, queue: QueueDep, store: StoreDep,
                            settings: SettingsDep, metrics: MetricsDep) -> JSONResponse:  # fmt: skip
    """Invert or score your own images: multipart `archive` (zip or tar) plus the JSON route's fields as form
    fields. Non-images inside are skipped with a reason each (the result's `errors`)."""
    await queue.require_up()
    job_id = uuid.uuid4().hex
    folder = _new_folder(store, job_id, settings, "upload")
    try:
        receiver = _UploadReceiver(folder.root / "receiving", settings.max_job_upload_bytes)
        await receiver.receive(request)
        body = _form_body(receiver.fields, settings)
        model = registry.get(body.model)
        _check(body, model, settings, uploaded=True)
        limits = ArchiveLimits(settings.max_job_images, settings.max_image_bytes, settings.max_job_expanded_bytes)
        try:
            index = await asyncio.to_thread(inspect_archive, folder.root / "receiving", folder, limits)
        except OSError as error:
            raise APIError(507, str(store_error(error, folder.root) or error)) from None
        except StoreError as error:
            raise APIError(507, str(error)) from None
        spec = _spec(body)
        plan = make_plan(spec, model, {"type": "archive"}, len(index["members"]),
                         chunk_images(settings.job_chunk_images, body.refine_steps))  # fmt: skip
        fields = _echo(body, {"dataset", "split", "n"})
        request_echo = {**fields, "model": model.name, "dataset": None, "n": len(index["members"]),
                        "archive_bytes": receiver.archive_bytes}  # fmt: skip
    except BaseException:
        store.remove(job_id)  # nothing of a refused upload stays in the store
        raise
    response = await _submit(queue, store, folder, job_id, plan, request_echo)
    metrics.jobs_submitted.inc()
    return response


def _job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise APIError(422, "a job id is 32 lowercase hex characters")
    return job_id


@router.get("/{job_id}", response_model=JobPublic)
async def get_job(job_id: str, queue: QueueDep, store: StoreDep) -> JobPublic:
    job_id = _job_id(job_id)
    return JobPublic(**await queue.get(job_id, store.expired(job_id)))


@router.get("/{job_id}/result", responses={200: {"content": {"application/octet-stream": {}}}})
async def get_result(job_id: str, queue: QueueDep, store: StoreDep) -> Any:
    """An invert job's `.npz` (z [N, |z|] float32, names, errors [M, 2], reconstructions if asked), streamed; a
    metric job's JSON. 409 until the job is complete."""
    job_id = _job_id(job_id)
    job = await queue.get(job_id, store.expired(job_id))
    if job["status"] != "complete":
        why = f" ({job['error']})" if job.get("error") else ""
        raise APIError(409, f"job {job_id} is {job['status']}{why}; its result exists once the status is complete")
    if job["kind"] != "invert":
        return JSONResponse(job["result"])
    path = store.folder(job_id).result
    summary = job["result"] or {}
    if not path.is_file() or path.stat().st_size != summary.get("bytes"):
        raise APIError(410, f"the result of job {job_id} is no longer in the result store (expired or removed)")
    return FileResponse(path, media_type="application/octet-stream", filename=f"dfi-{job_id}.npz",
                        content_disposition_type="attachment")  # fmt: skip


@router.delete("/{job_id}", response_model=JobPublic)
async def cancel_job(job_id: str, queue: QueueDep, store: StoreDep, settings: SettingsDep) -> JobPublic:
    job_id = _job_id(job_id)
    job = await queue.cancel(job_id, store.expired(job_id))
    store.set_expiry(job_id, time.time() + settings.job_result_ttl_s)
    return JobPublic(**job)
