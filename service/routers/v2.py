"""The Open Inference Protocol (KServe V2 / Triton HTTP) as a compatible subset: a Triton client works unchanged.

    GET  /v2                                   server metadata (name, version, extensions)
    GET  /v2/health/live, /v2/health/ready     200 when alive / when the default bundle serves (as /readyz)
    GET  /v2/models/{m}[/versions/1]           model metadata: inputs and outputs, datatype, shape (-1: batch)
    GET  /v2/models/{m}[/versions/1]/ready     200 {"name", "ready": true}
    POST /v2/models/{m}[/versions/1]/infer     inference: JSON tensors or the binary tensor data extension

One V2 model per graph of every loaded bundle, named BUNDLE.GRAPH (`fashion-mnist.invert`, `emoji.generator`,
...; `fashion-mnist.outpaint` takes two inputs, patch and z_edge), version "1". Names, shapes and datatypes come
from the ONNX Runtime session. Single-input graphs the registry serves run through its micro-batcher (merged with
the REST routes' calls); the others — outpaint, and graphs the registry does not open (discriminator_features),
opened here on first use and kept — run directly, one call per request. Limits as on the REST routes: image
inputs (rank 4) at most max_images_per_request rows, latents max_latents_per_request, bodies max_body_bytes
(compressed and inflated). The codec is service/v2.py; errors are `{"error": "<message>"}` (V2ErrorShape turns
the ones middleware renders, e.g. 401, 429, 413, into that shape too).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dfi_core.onnx_graph import OnnxGraph
from service import v2
from service.errors import APIError
from service.metrics import ApiMetrics
from service.registry import LoadedModel, ModelRegistry
from service.settings import Settings

log = logging.getLogger("service")
router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (V2)"])

VERSION = "1"  # every bundle graph has one version
PLATFORM = "onnxruntime_onnx"  # Triton's platform name for ONNX Runtime models
SERVER_NAME = "dfi"
EXTENSIONS = ["binary_tensor_data"]
LARGE = 256 * 1024  # bodies above this are parsed / encoded off the event loop


@dataclass
class Served:
    """A V2 model: one graph of one loaded bundle."""

    name: str
    model: LoadedModel
    graph_name: str
    graph: OnnxGraph
    signature: v2.Signature


def _signature(name: str, graph: OnnxGraph, settings: Settings) -> v2.Signature:
    inputs = []
    for spec, shape in zip(graph.session.get_inputs(), graph.input_shapes, strict=True):
        dims = tuple(d if isinstance(d, int) else -1 for d in shape)
        limit = (("max_images_per_request", settings.max_images_per_request) if len(dims) == 4
                 else ("max_latents_per_request", settings.max_latents_per_request))  # fmt: skip
        inputs.append(v2.TensorSpec(spec.name, v2.ONNX_DATATYPES.get(spec.type, spec.type), dims, limit))
    outputs = [v2.TensorSpec(o.name, v2.ONNX_DATATYPES.get(o.type, o.type), tuple(d if isinstance(d, int) and d >= 0
               else -1 for d in o.shape)) for o in graph.session.get_outputs()]  # fmt: skip
    return v2.Signature(name, tuple(inputs), tuple(outputs))


class V2Models:
    """BUNDLE.GRAPH → Served, for one registry; graphs the registry did not open are opened once, on first use."""

    def __init__(self, registry: ModelRegistry, settings: Settings, metrics: ApiMetrics) -> None:
        self.registry, self.settings, self.metrics = registry, settings, metrics
        self.served: dict[str, Served] = {}
        self.unavailable: dict[str, str] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def names(self) -> list[str]:
        return sorted(f"{bundle}.{graph}" for bundle, model in self.registry.models.items()
                      for graph in model.bundle.manifest.graphs.entries())  # fmt: skip

    def _split(self, name: str) -> tuple[LoadedModel, str]:
        bundle, _, graph = name.rpartition(".")
        model = self.registry.models.get(bundle)
        if model is None or graph not in model.bundle.manifest.graphs.entries():
            failed = f"; bundle {bundle!r} failed to load: {self.registry.failed[bundle]}" if (
                bundle in self.registry.failed) else ""  # fmt: skip
            raise v2.ProtocolError(404, f"unknown model {v2.shown(name)}{failed}; models (BUNDLE.GRAPH): "
                                        f"{self.names()}")  # fmt: skip
        return model, graph

    async def get(self, name: str, version: str | None = None) -> Served:
        if version is not None and version != VERSION:
            self._split(name)  # an unknown model is named as such first
            raise v2.ProtocolError(404, f"model {name} has no version {v2.shown(version)}; its versions: "
                                        f"[{VERSION!r}]")  # fmt: skip
        if name in self.served:
            return self.served[name]
        model, graph_name = self._split(name)
        async with self.locks.setdefault(name, asyncio.Lock()):
            if name not in self.served and name not in self.unavailable:
                graph = model.graphs.get(graph_name)
                try:
                    if graph is None:
                        graph = await asyncio.to_thread(model.bundle.open_graph, graph_name,
                                                        providers=self.settings.providers,
                                                        intra_op_threads=self.settings.intra_op_threads)  # fmt: skip
                        self.metrics.provider.labels(model.name, graph_name, graph.provider).set(1)
                    self.served[name] = Served(name, model, graph_name, graph, _signature(name, graph, self.settings))
                except Exception as error:  # a graph that cannot open is reported, not a 500 on every request
                    log.exception("V2 model %s: graph %s did not open", name, graph_name)
                    self.unavailable[name] = f"{type(error).__name__}: {error}"
        if name in self.unavailable:
            raise v2.ProtocolError(503, f"model {name} is not ready: {self.unavailable[name][:300]}")
        return self.served[name]


def _models(request: Request) -> V2Models:
    state = request.app.state
    current = getattr(state, "v2_models", None)
    if current is None or current.registry is not state.registry:
        current = state.v2_models = V2Models(state.registry, state.settings, state.metrics)
    return current


def _error(status: int, message: str) -> Response:
    return Response(v2.error_json(message), status_code=status, media_type="application/json")


def _v2_errors(endpoint: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Errors of the V2 routes in the V2 shape: the codec's, and APIError from shared code (the body limit's 413
    while the body streams in, which app.BodyLimit then lets through as it is a 413)."""

    @functools.wraps(endpoint)
    async def wrapped(*args: Any, **kwargs: Any) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except v2.ProtocolError as error:
            return _error(error.status, error.message)
        except APIError as error:
            limit = f" (limit: {json.dumps(error.limit)})" if error.limit is not None else ""
            return _error(error.status, f"{error.message}{limit}")

    return wrapped


# --- Server --------------------------------------------------------------------------------------------------


@router.get("")
@_v2_errors
async def server_metadata(request: Request) -> Response:
    return JSONResponse({"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS})


@router.get("/health/live")
@_v2_errors
async def live() -> Response:
    return JSONResponse({"live": True})


@router.get("/health/ready")
@_v2_errors
async def ready(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.registry
    is_ready = registry.default in registry.models
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


# --- Models --------------------------------------------------------------------------------------------------


@router.get("/models/{model_name}")
@router.get("/models/{model_name}/versions/{version}")
@_v2_errors
async def model_metadata(request: Request, model_name: str) -> Response:
    served = await _models(request).get(model_name, request.path_params.get("version"))
    return JSONResponse(v2.model_metadata(served.signature, [VERSION], PLATFORM))


@router.get("/models/{model_name}/ready")
@router.get("/models/{model_name}/versions/{version}/ready")
@_v2_errors
async def model_ready(request: Request, model_name: str) -> Response:
    # 404 for an unknown model or version, 503 for a graph that does not open
    served = await _models(request).get(model_name, request.path_params.get("version"))
    return JSONResponse({"name": served.name, "ready": True})


_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["FP32"]},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
        "data": {"type": "array", "items": {}, "description": "flat in row-major order, or nested as the shape"},
    },
}
_INFER_DOC = {
    "requestBody": {
        "description": "The V2 inference request; with the binary tensor data extension the JSON is the first "
        "Inference-Header-Content-Length bytes and the tensors' bytes follow (application/octet-stream).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
                        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                            },
                        },
                    },
                }
            }
        },
        "required": True,
    }
}


@router.post("/models/{model_name}/infer", openapi_extra=_INFER_DOC)
@router.post("/models/{model_name}/versions/{version}/infer", openapi_extra=_INFER_DOC)
@_v2_errors
async def infer(request: Request, model_name: str) -> Response:
    served = await _models(request).get(model_name, request.path_params.get("version"))
    metrics: ApiMetrics = request.app.state.metrics
    try:
        response = await _infer(request, served)
    except (v2.ProtocolError, APIError):
        metrics.v2_requests.labels(served.name, "failure").inc()
        raise
    metrics.v2_requests.labels(served.name, "success").inc()
    return response


async def _infer(request: Request, served: Served) -> Response:
    settings: Settings = request.app.state.settings
    raw = await request.body()
    large = len(raw) > LARGE
    headers = request.headers
    coding = headers.get("content-encoding")
    if coding:
        raw = await asyncio.to_thread(v2.inflate, raw, coding, settings.max_body_bytes)
        large = len(raw) > LARGE
    header_length = headers.get(v2.HEADER)
    args = (raw, header_length, served.signature)
    parsed = await asyncio.to_thread(v2.parse_infer_request, *args) if large else v2.parse_infer_request(*args)
    output = await _run(request.app.state.metrics, served, list(parsed.inputs.values()))
    outputs = [(name, output, binary) for name, binary in parsed.outputs]
    encode = (served.name, VERSION, parsed.id, outputs)
    big_output = output.nbytes > LARGE
    body, json_length = await asyncio.to_thread(v2.encode_infer_response, *encode) if big_output else (
        v2.encode_infer_response(*encode))  # fmt: skip
    extra: dict[str, str] = {}
    if json_length is not None:
        extra[v2.HEADER] = str(json_length)
    reply_coding = v2.response_coding(headers.get("accept-encoding"))
    if reply_coding is not None:
        body = await asyncio.to_thread(v2.compress, body, reply_coding) if len(body) > LARGE else (
            v2.compress(body, reply_coding))  # fmt: skip
        extra["Content-Encoding"] = reply_coding
        extra["Vary"] = "Accept-Encoding"
    media_type = "application/octet-stream" if json_length is not None else "application/json"
    return Response(body, media_type=media_type, headers=extra)


async def _run(metrics: ApiMetrics, served: Served, arrays: list[np.ndarray]) -> np.ndarray:
    model, graph_name = served.model, served.graph_name
    try:
        if len(arrays) == 1 and graph_name in model.batchers:
            return await model.run(graph_name, arrays[0])  # the micro-batcher counts rows and executions
        output = await asyncio.to_thread(served.graph, *arrays)
    except ValueError as error:  # OnnxGraph's own boundary check (the codec checked the same before)
        raise v2.ProtocolError(400, str(error)) from None
    rows = len(arrays[0])
    metrics.batch_size.labels(model.name, graph_name).observe(rows)  # one execution of the graph
    metrics.inferences.labels(model.name, graph_name).inc(rows)
    return output


# --- Errors rendered outside the routes ----------------------------------------------------------------------


def is_v2_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


class V2ErrorShape:
    """Pure ASGI, outermost: on /v2 paths, the service's REST error bodies (`{"error": {"message", ...}}` from the
    security middleware's 401/403/429, BodyLimit's 413, the 404/405 handlers) become `{"error": "<message>"}`,
    which Triton clients read. Other responses pass untouched, streamed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v2_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if message["status"] >= 400 and content_type.startswith(b"application/json"):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                original = b"".join(chunks)
                body = v2.from_rest_error(original) or original
                headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
                await send({**held, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, reshape)
