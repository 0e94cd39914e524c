"""The loaded bundles: one `LoadedModel` per bundle, each graph behind a micro-batcher.

Bundles are discovered under `Settings.models_dir` (each sub-folder with a manifest.json), verified
(`dfi_core.bundle.load_bundle`) and opened with the configured ONNX Runtime providers. A bundle that fails to load
is recorded with its reason — the service still starts and `/readyz` names what is degraded.

Refinement's torch G (`LoadedModel.refinement_generator`) is built on first use by `dfi_core.refinement.
load_bundle_generator`, the one way for every bundle (generator.onnx via onnx2torch, or generator.safetensors where
the manifest names it); the result — or why there is none, e.g. an op onnx2torch cannot convert — is kept.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from dfi_core.bundle import Bundle, BundleError, load_bundle
from dfi_core.onnx_graph import OnnxGraph
from service.batching import MicroBatcher
from service.metrics import ApiMetrics
from service.settings import Settings

if TYPE_CHECKING:
    from torch import nn

    from dfi_core.refinement import RefinementGenerator, RefinementUnavailable

log = logging.getLogger("service")
T = TypeVar("T")
GraphCall = Callable[[str, np.ndarray], np.ndarray]  # (graph, input rows) → output rows, in the calling thread
SERVED_GRAPHS = ("invert", "generator", "classifier", "outpaint")


@dataclass
class LoadedModel:
    bundle: Bundle
    graphs: dict[str, OnnxGraph]
    batchers: dict[str, MicroBatcher]
    directions: dict[str, np.ndarray]
    _refinement: RefinementGenerator | None = field(default=None, repr=False)
    _refinement_error: RefinementUnavailable | None = field(default=None, repr=False)
    _refinement_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.bundle.name

    def provider(self, graph: str) -> str:
        return self.graphs[graph].provider

    async def run(self, graph: str, array: np.ndarray) -> np.ndarray:
        if graph not in self.batchers:
            raise KeyError(graph)
        return await self.batchers[graph](self.graphs[graph].validate(array))

    async def run_alone(self, graphs: tuple[str, ...], work: Callable[[GraphCall], T]) -> T | None:
        """`work(call)` in ONE thread hop, where `call(graph, array)` runs one of `graphs` directly — or None,
        without running anything, when any of them is busy or has callers waiting (then the caller takes the
        batched path, which merges it with them). At one request at a time this replaces three hops (decode,
        invert, generator) by one; under load nothing changes (benchmarks/README.md, issue 20)."""
        batchers = [self.batchers[graph] for graph in graphs]
        claimed: list[MicroBatcher] = []
        for batcher in batchers:
            if not batcher.claim():
                break
            claimed.append(batcher)
        try:
            if len(claimed) < len(batchers):
                return None

            def call(graph: str, array: np.ndarray) -> np.ndarray:
                if graph not in graphs:
                    raise KeyError(f"{graph} was not claimed (claimed: {graphs})")
                return self.batchers[graph].run_claimed(self.graphs[graph].validate(array))

            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(batchers[0].executor, work, call)
        finally:
            for batcher in claimed:
                batcher.release()

    def refinement_generator(self) -> RefinementGenerator:
        """G as a torch module for refinement, with its source and why (lazy: torch only when first needed; built
        once — concurrent first requests and the start-up warm-up wait for one build). Raises
        `dfi_core.refinement.RefinementUnavailable` (e.g. `UnsupportedOpError` naming the op) on every call when
        the bundle cannot refine; inversion without refinement does not depend on it."""
        with self._refinement_lock:
            if self._refinement is None and self._refinement_error is None:
                from dfi_core.refinement import RefinementUnavailable, load_bundle_generator

                try:
                    self._refinement = load_bundle_generator(self.bundle)
                    log.info("%s: refinement G from %s (%s); parity %s", self.name, self._refinement.source,
                             self._refinement.reason, self._refinement.parity)  # fmt: skip
                except RefinementUnavailable as error:
                    self._refinement_error = error
                    log.warning("%s: refinement unavailable: %s", self.name, error.reason)
            if self._refinement_error is not None:
                raise self._refinement_error
            assert self._refinement is not None
            return self._refinement

    def torch_generator(self) -> nn.Module:
        """The refinement G's module for API requests: a bundle that cannot refine answers 400 with the reason
        (refine_steps = 0 still works)."""
        from dfi_core.refinement import RefinementUnavailable
        from service.errors import APIError

        try:
            return self.refinement_generator().module
        except RefinementUnavailable as error:
            raise APIError(400, f"refine_steps > 0 is unavailable for model {self.name}: {error.reason}",
                           limit={"refine_steps": 0}) from None  # fmt: skip


@dataclass
class ModelRegistry:
    models: dict[str, LoadedModel]
    failed: dict[str, str]
    default: str

    def get(self, name: str | None) -> LoadedModel:
        from service.errors import APIError

        name = name or self.default
        if name not in self.models:
            # Names are matched against the loaded set only — never used as a path.
            known = sorted(self.models)
            raise APIError(404, f"unknown model {name[:80]!r}; loaded models: {known}", limit={"models": known})
        return self.models[name]

    async def close(self) -> None:
        for model in self.models.values():
            for batcher in model.batchers.values():
                await batcher.close()


def bundle_folders(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.iterdir() if (p / "manifest.json").is_file())


def load_model(folder: Path, settings: Settings, metrics: ApiMetrics) -> LoadedModel:
    bundle = load_bundle(folder, verify=settings.verify_bundles)
    graphs: dict[str, OnnxGraph] = {}
    batchers: dict[str, MicroBatcher] = {}
    for graph in SERVED_GRAPHS:
        if graph not in bundle.manifest.graphs.entries():
            continue
        session = bundle.open_graph(
            graph,
            providers=settings.providers,
            intra_op_threads=settings.intra_op_threads,
            allow_spinning=settings.intra_op_spinning,
        )
        graphs[graph] = session
        metrics.provider.labels(bundle.name, graph, session.provider).set(1)
        if len(session.input_names) != 1:
            continue  # outpaint (patch + z_edge) is called directly, not through a single-input batcher
        if session.provider != (session.requested_providers or ["?"])[0]:
            log.warning("%s/%s: asked for %s, runs on %s", bundle.name, graph, session.requested_providers,
                        session.provider)  # fmt: skip

        def observe(rows: int, model: str = bundle.name, g: str = graph) -> None:
            metrics.batch_size.labels(model, g).observe(rows)
            metrics.inferences.labels(model, g).inc(rows)

        batchers[graph] = MicroBatcher(
            lambda array, s=session: s.session.run([s.output_name], {s.input_name: array})[0],
            max_batch=settings.max_batch_size,
            max_delay_s=settings.max_batch_delay_ms / 1000,
            enabled=settings.batching,
            on_batch=observe,
            name=f"{bundle.name}-{graph}",
        )
    directions = {
        name: np.load(bundle.path(d.file), allow_pickle=False).astype(np.float32)
        for name, d in bundle.manifest.directions.items()
    }
    for name, vector in directions.items():
        if vector.shape != (bundle.manifest.latent.size,) or not np.isfinite(vector).all():
            raise BundleError(f"bundle {bundle.name!r}: direction {name} has shape {vector.shape} or non-finite values")
    return LoadedModel(bundle, graphs, batchers, directions)


def load_registry(settings: Settings, metrics: ApiMetrics) -> ModelRegistry:
    models: dict[str, LoadedModel] = {}
    failed: dict[str, str] = {}
    for folder in bundle_folders(settings.models_dir):
        if settings.models is not None and folder.name not in settings.models:
            continue
        try:
            model = load_model(folder, settings, metrics)
        except (BundleError, OSError, ValueError) as error:
            failed[folder.name] = str(error)
            log.error("bundle %s not loaded: %s", folder, error)
            continue
        models[model.name] = model
        log.info("bundle %s loaded: %s", model.name, {g: s.provider for g, s in model.graphs.items()})
    for name in settings.models or []:
        if name not in models and name not in failed:
            failed[name] = f"no bundle folder {settings.models_dir / name}"
    return ModelRegistry(models, failed, settings.default_model)
