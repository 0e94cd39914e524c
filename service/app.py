"""The FastAPI app: `create_app(settings)` loads the bundles, connects the job queue and mounts the routers.

Every response carries `X-Request-ID` (the caller's when it sends a sane one); every request is counted and timed
by route template in Prometheus; bodies above `max_body_bytes` are refused with 413 before they are read.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors, security
from service.metrics import ApiMetrics
from service.queue import JobQueue
from service.registry import load_registry
from service.routers import edit, health, invert, jobs, models, outpaint, page, v2
from service.settings import Settings, get_settings
from service.store import ResultStore
from service.timeouts import request_id_of

log = logging.getLogger("service")


class BodyLimit:
    """Pure ASGI: 413 for a declared Content-Length over the limit, and for a streamed body once it passes it.

    A chunked body has no Content-Length, so `receive` counts and raises `errors.BodyTooLarge`; the error handlers
    and `request_context` find it however it is wrapped. Whatever else the app answers after an overflow (a route
    that swallowed the error, a parser that turned it into a 400) is replaced by the same 413 here, so every
    route answers alike, with `request_id` and `X-Request-ID`.
    """

    def __init__(self, app: ASGIApp, limit: int, routes: dict[str, tuple[int, str]] | None = None) -> None:
        # routes: path → (limit, setting) for the routes with their own limit (the streamed job upload).
        self.app, self.default, self.routes = app, (limit, "max_body_bytes"), routes or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.routes.get(scope.get("path", ""), self.default)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, send, f"request body larger than {setting} (or a bad Content-Length)",
                               limit, setting)  # fmt: skip
            return
        seen, overflowed, started, replaced = 0, False, False, False

        async def limited() -> Message:
            nonlocal seen, overflowed
            if overflowed:
                raise errors.BodyTooLarge(limit, setting)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflowed = True
                    raise errors.BodyTooLarge(limit, setting)
            return message

        async def guarded(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the app's own answer to an overflow: dropped, ours was sent
            if message["type"] == "http.response.start":
                if overflowed and message["status"] != 413:
                    replaced = True
                    await self._refuse(scope, send, f"request body larger than {setting}", limit, setting)
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception as error:
            if errors.body_limit_error(error) is None or started or replaced:
                raise
            await self._refuse(scope, send, f"request body larger than {setting}", limit, setting)

    async def _refuse(self, scope: Scope, send: Send, message: str, limit: int, setting: str) -> None:
        request_id = request_id_of(scope)  # a Content-Length refusal never reaches RequestContext
        body = {"error": {"message": message, "request_id": request_id, "limit": {setting: limit}}}
        response = JSONResponse(body, status_code=413, headers={"X-Request-ID": request_id})
        await response(scope, None, send)  # type: ignore[arg-type]


class RequestContext:
    """Pure ASGI: the request id (the caller's sane `X-Request-ID`, else a new one) in `scope["state"]` and on every
    response, and the request counted and timed by route template in Prometheus: by the status sent, 408 when
    timeouts.ReadTimeout (outside) answered a stalled body, 499 when nobody answered (the client went away).

    Pure ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the app in a task group
    and re-wraps every response in a streaming one; with the access check it cost 23 % of /invert's per-request
    CPU at one image per request (benchmarks/README.md, "Serving paths side by side").
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        start, status, started = time.perf_counter(), "499", False  # 499: nobody answered (the client went)

        async def stamped(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = str(message["status"]), True
                message["headers"] = [*(h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"),
                                      header]  # fmt: skip
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        except Exception as error:  # BodyLimit's 413, raised while the route reads the body, perhaps in a group
            found = error if isinstance(error, errors.APIError) else errors.body_limit_error(error)
            if found is None or started:
                status = "500"  # a bug: ServerErrorMiddleware (outside) answers 500 with the id from scope["state"]
                raise
            response = JSONResponse(errors.error_body(Request(scope), found.message, found.limit),
                                    status_code=found.status)  # fmt: skip
            await response(scope, receive, stamped)
        finally:
            if scope["state"].get("read_timed_out"):
                status = "408"  # timeouts.ReadTimeout (outside) answered; what the app did after is dropped
            label = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(label, scope["method"], status).inc()
            self.metrics.latency.labels(label, scope["method"]).observe(time.perf_counter() - start)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def bound_heap(threshold: int) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes (mallopt; True when applied). glibc's default adapts: each
    freed mmapped block raises the threshold to its size (up to 32 MiB), so from then on the big buffers of large
    requests — a decoded 4000×4000 image is 48 MB — come from the heap and stay resident after the request ends
    (measured: 150 → ~400 MiB after four such images, for good). A fixed threshold turns that adaptation off: they
    are mmapped and handed back when freed. Not glibc (musl, macOS): nothing to do."""
    if threshold <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1


def warm_up_refinement(registry, settings: Settings) -> None:  # noqa: ANN001
    """One refinement step on the default bundle in the background: the first DFI^opt request otherwise pays torch's
    import and first-call set-up (1.5–3 s measured here) on top of its own work. It costs memory from the start —
    torch, G converted by onnx2torch and torch's first-call buffers: ~295 MiB resident (docs/reliability.md) — so
    DFI_REFINEMENT_WARM_UP=false leaves it to the first request with refine_steps > 0 (an API that never refines,
    or the slim image without torch, then never loads torch)."""
    from service.refinement import refine_latents, torch_available

    if not settings.refinement_warm_up or not torch_available() or registry.default not in registry.models:
        return
    try:
        model = registry.models[registry.default]
        shape = (1, *model.bundle.manifest.image.shape)
        x = np.zeros(shape, dtype=np.float32)
        z = np.zeros((1, model.bundle.manifest.latent.size), dtype=np.float32)
        refine_latents(model.torch_generator(), x, z, steps=1, threads=settings.torch_threads)
    except Exception:  # a failed warm-up must never stop the service; the first request will say what is wrong
        log.exception("refinement warm-up failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not bound_heap(settings.malloc_mmap_threshold) and settings.malloc_mmap_threshold:
            log.info("malloc_mmap_threshold not applied (not glibc): freed large buffers may stay resident")
        app.state.registry = load_registry(settings, metrics)
        app.state.queue = JobQueue(settings)
        await app.state.queue.connect()
        log.info("serving %s (default %s); failed: %s", sorted(app.state.registry.models), settings.default_model,
                 app.state.registry.failed or "none")  # fmt: skip
        warm = asyncio.create_task(asyncio.to_thread(warm_up_refinement, app.state.registry, settings))
        yield
        warm.cancel()
        await app.state.registry.close()
        await app.state.queue.close()

    app = FastAPI(
        title="DFI inference service",
        version="0.1.0",
        description="GAN inversion with discriminator features (DFI): invert, edit, outpaint, metric jobs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = ResultStore(settings.results_dir)
    app.state.metrics = metrics
    errors.install(app)
    security.install(app, settings)  # inside RequestContext below: 401/403/429 still get ids and are counted

    for router in (invert.router, edit.router, outpaint.router, jobs.router, models.router, health.router, v2.router):
        app.include_router(router)
    app.include_router(page.router)  # GET / : the web page (service/static/)
    page.mount_static(app)
    # The job upload streams to the result store with its own, larger limit (counted while streaming, too).
    upload_limit = {"/jobs/upload": (settings.max_job_upload_bytes, "max_job_upload_bytes")}
    app.add_middleware(RequestContext, metrics=metrics)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, routes=upload_limit)
    app.add_middleware(v2.V2ErrorShape)  # outermost: errors from middleware on /v2 paths as {"error": "..."}
    return app
