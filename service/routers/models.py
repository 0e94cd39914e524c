"""GET /models, GET /models/{name}: what is loaded, its manifest and its editing directions."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import RegistryDep
from service.refinement import torch_available
from service.registry import LoadedModel
from service.schemas import DirectionPublic, ModelDetail, ModelPublic

router = APIRouter(prefix="/models", tags=["models"])


def _public(model: LoadedModel) -> dict:
    m = model.bundle.manifest
    return {
        "name": model.name,
        "dataset": m.dataset.name,
        "image": m.image.model_dump(mode="json"),
        "latent": m.latent.model_dump(mode="json"),
        "graphs": {g: s.provider for g, s in model.graphs.items()},
        "directions": [
            DirectionPublic(name=k, description=d.description, method=d.method, counts=d.counts)
            for k, d in m.directions.items()
        ],  # fmt: skip
        "class_names": m.dataset.class_names,
        "outpaint": "outpaint" in model.graphs,
        "refinement": torch_available(),
    }


@router.get("", response_model=list[ModelPublic])
async def list_models(registry: RegistryDep) -> list[ModelPublic]:
    return [ModelPublic(**_public(model)) for model in registry.models.values()]


@router.get("/{name}", response_model=ModelDetail)
async def get_model(name: str, registry: RegistryDep) -> ModelDetail:
    model = registry.get(name)
    return ModelDetail(**_public(model), manifest=model.bundle.manifest.model_dump(mode="json"))
