"""POST /edit: latent vector arithmetic (IJCV sec. 4.6, eq. 9) and interpolation (sec. 4.5)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from service.deps import MetricsDep, RegistryDep, SettingsDep
from service.errors import APIError, shown
from service.images import png_base64
from service.inference import check_count, decode_and_invert, generate
from service.schemas import FLOAT32_MAX, EditedPublic, EditRequest, EditResponse

router = APIRouter(tags=["editing"])


def _check_float32(values: np.ndarray, what: str) -> np.ndarray:
    """The inputs are within float32 (schemas), but z + s·v or an interpolation of them can still overflow to inf,
    which the generator would turn into NaN pixels and JSON cannot carry: a 422 naming the step that overflowed."""
    if not np.isfinite(values).all():
        raise APIError(422, f"{what} overflows the float32 range ±{FLOAT32_MAX:.8g}; use smaller values",
                       limit={"float32_max": FLOAT32_MAX})  # fmt: skip
    return values


@router.post("/edit", response_model=EditResponse)
async def edit(body: EditRequest, registry: RegistryDep, settings: SettingsDep, metrics: MetricsDep) -> EditResponse:
    """Start from latents or images (inverted with DFI); add named directions of the bundle with strengths and/or
    an arbitrary vector — or, with `interpolate_steps`, walk linearly from the first latent to the second."""
    model = registry.get(body.model)
    size = model.bundle.manifest.latent.size
    if (body.latents is None) == (body.images is None):
        raise APIError(422, "give exactly one of 'latents' or 'images'")
    timings: dict[str, float] = {}
    if body.latents is not None:
        check_count(len(body.latents), settings.max_latents_per_request, "latents", "max_latents_per_request")
        bad = [i for i, z in enumerate(body.latents) if len(z) != size]
        if bad:
            raise APIError(422, f"latent(s) {bad[:5]} do not have {size} values (model {model.name})",
                           limit={"latent_size": size})  # fmt: skip
        z = np.asarray(body.latents, dtype=np.float32)
    else:
        _, z = await decode_and_invert(body.images, model, 0, settings, metrics, timings)  # type: ignore[arg-type]

    if body.interpolate_steps is not None:
        if body.interpolate_steps > settings.max_interpolation_steps:
            raise APIError(422, f"interpolate_steps {shown(body.interpolate_steps)} > max_interpolation_steps",
                           limit={"max_interpolation_steps": settings.max_interpolation_steps})  # fmt: skip
        if len(z) != 2 or body.directions or body.vector is not None:
            raise APIError(422, "interpolation takes exactly two latents or images and no directions/vector")
        t = np.linspace(0.0, 1.0, body.interpolate_steps, dtype=np.float32)[:, None]
        with np.errstate(over="ignore", invalid="ignore"):
            edited, operation = _check_float32((1 - t) * z[0] + t * z[1], "the interpolation"), "interpolate"
    else:
        if not body.directions and body.vector is None:
            raise APIError(422, f"give 'directions' (known: {sorted(model.directions)}), 'vector' or "
                           "'interpolate_steps'")  # fmt: skip
        offset = np.zeros(size, dtype=np.float32)
        for item in body.directions:
            if item.name not in model.directions:
                raise APIError(422, f"model {model.name} has no direction {item.name!r}; known: "
                               f"{sorted(model.directions)}")  # fmt: skip
            if abs(item.strength) > settings.max_strength:
                raise APIError(422, f"|strength| of {item.name} is {abs(item.strength)} > max_strength",
                               limit={"max_strength": settings.max_strength})  # fmt: skip
            offset += item.strength * model.directions[item.name]
        if body.vector is not None:
            if len(body.vector) != size:
                raise APIError(422, f"vector has {len(body.vector)} values, model {model.name} needs {size}",
                               limit={"latent_size": size})  # fmt: skip
            if abs(body.vector_strength) > settings.max_strength:
                raise APIError(422, f"|vector_strength| {abs(body.vector_strength)} > max_strength",
                               limit={"max_strength": settings.max_strength})  # fmt: skip
            with np.errstate(over="ignore", invalid="ignore"):
                term = _check_float32(body.vector_strength * np.asarray(body.vector, dtype=np.float32),
                                      "vector · vector_strength")  # fmt: skip
                offset = _check_float32(offset + term, "the sum of the direction offsets and vector · vector_strength")
        with np.errstate(over="ignore", invalid="ignore"):
            edited, operation = _check_float32(z + offset, "latent + offset"), "directions"
    edited = edited.astype(np.float32)
    images = await generate(model, edited, timings) if body.return_images else None
    return EditResponse(
        model=model.name,
        operation=operation,
        results=[EditedPublic(latent=edited[i].tolist(), image_png=png_base64(images[i]) if images is not None
                              else None) for i in range(len(edited))],
    )  # fmt: skip
