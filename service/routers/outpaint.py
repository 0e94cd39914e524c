"""POST /outpaint: SCGAN (IJCV sec. 3.3) — a patch → full images. Served only by bundles with an outpaint graph."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import RegistryDep, SettingsDep
from service.errors import APIError
from service.schemas import OutpaintRequest

router = APIRouter(tags=["outpainting"])


@router.post("/outpaint")
async def outpaint(body: OutpaintRequest, registry: RegistryDep, settings: SettingsDep) -> dict:
    model = registry.get(body.model)
    if body.samples > settings.max_latents_per_request:
        raise APIError(422, f"samples {body.samples} > max_latents_per_request",
                       limit={"max_latents_per_request": settings.max_latents_per_request})  # fmt: skip
    with_graph = sorted(name for name, m in registry.models.items() if "outpaint" in m.graphs)
    if "outpaint" not in model.graphs:
        raise APIError(404, f"model {model.name} has no SCGAN outpaint graph; models with one: {with_graph}",
                       limit={"models_with_outpaint": with_graph})  # fmt: skip
    # The outpaint graph's contract (patch + z_edge → image) arrives with the SCGAN issue; no bundle has one yet.
    raise APIError(404, f"model {model.name}: this service version cannot run outpaint graphs yet")
