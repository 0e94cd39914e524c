"""GET /healthz (alive), GET /readyz (bundles loaded; what is degraded), GET /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import MetricsDep, QueueDep, RegistryDep
from service.errors import APIError
from service.refinement import torch_available

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(registry: RegistryDep, queue: QueueDep, metrics: MetricsDep) -> JSONResponse:
    """200 when the default bundle serves; `degraded` lists what does not (failed bundles, Redis, CPU fallback)."""
    redis_ok, redis_message = await queue.ping()
    metrics.redis_up.set(1 if redis_ok else 0)
    degraded = [f"bundle {name}: {why}" for name, why in registry.failed.items()]
    if not redis_ok:
        degraded.append(f"jobs: {redis_message}")
    providers = {name: {g: s.provider for g, s in m.graphs.items()} for name, m in registry.models.items()}
    for name, graphs in providers.items():
        for graph, provider in graphs.items():
            requested = registry.models[name].graphs[graph].requested_providers[0]
            if provider != requested:
                degraded.append(f"{name}/{graph}: runs on {provider}, not {requested}")
    ready = registry.default in registry.models
    body = {
        "status": "ready" if ready else "not ready",
        "default_model": registry.default,
        "models": sorted(registry.models),
        "providers": providers,
        "jobs": redis_message,
        "refinement": "torch available" if torch_available() else "unavailable (no torch in this process)",
        "degraded": degraded,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def prometheus_metrics(queue: QueueDep, metrics: MetricsDep) -> Response:
    try:
        for state, count in (await queue.counts()).items():
            metrics.queue_depth.labels(state).set(count)
        metrics.redis_up.set(1)
    except APIError:
        metrics.redis_up.set(0)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
