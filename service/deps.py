"""`Annotated` dependencies: the routes ask for what they use, the app state holds it.

`async def`, though nothing is awaited: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per
dependency per request (three on /invert) for a dictionary lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.metrics import ApiMetrics
from service.queue import JobQueue
from service.registry import ModelRegistry
from service.settings import Settings
from service.store import ResultStore


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def _metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


async def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


async def _store(request: Request) -> ResultStore:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
StoreDep = Annotated[ResultStore, Depends(_store)]
