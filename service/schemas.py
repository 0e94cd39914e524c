"""Request and response models (Base → Create/Request → Public, as the FastAPI template). Bounds that depend on
settings (images per request, steps, strengths) are checked in the routes against `Settings` and answered with
the limit; the static ones live here."""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dfi_core.bundle import DIRECTION_NAME_PATTERN

MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Latent = list[float]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The graphs compute in float32: a JSON double beyond this (e.g. 1e308) would become inf in the cast.
FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4028235e38


def _finite_latents(latents: list[Latent] | None, what: str = "latent") -> list[Latent] | None:
    for i, z in enumerate(latents or []):
        label = f"{what} {i}" if what == "latent" else what
        if any(v != v or v in (float("inf"), float("-inf")) for v in z):
            raise ValueError(f"{label} holds NaN or inf")
        # Checked after the float32 rounding the service applies, so 3.4028235e38 itself (which rounds to the
        # float32 maximum) is accepted and exactly the values that would turn into inf are refused.
        with np.errstate(over="ignore"):
            beyond = np.flatnonzero(~np.isfinite(np.asarray(z, dtype=np.float32)))
        if beyond.size:
            j = int(beyond[0])
            raise ValueError(f"{label} value {j} ({z[j]:g}) is outside the float32 range "
                             f"±{FLOAT32_MAX:.8g} ({beyond.size} such value(s))")  # fmt: skip
    return latents


class Timings(BaseModel):
    decode_ms: float = 0.0
    invert_ms: float = 0.0
    refine_ms: float = 0.0
    generate_ms: float = 0.0
    total_ms: float = 0.0


class InvertRequest(_Request):
    images: list[str] = Field(min_length=1, description="base64-encoded image files (PNG, JPEG, ...)")
    model: str | None = Field(None, pattern=MODEL_NAME, description="bundle name (default: the service's)")
    refine_steps: int = Field(0, ge=0, description="DFI^opt: Adam steps of eq. 2 after DFI (needs torch)")
    return_reconstruction: bool = Field(True, description="include G(ẑ) as a base64 PNG")


class InversionPublic(BaseModel):
    latent: Latent
    reconstruction_png: str | None = None
    method: Literal["dfi", "dfi_opt"]


class InvertResponse(BaseModel):
    model: str
    results: list[InversionPublic]
    timings: Timings


class DirectionStrength(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=DIRECTION_NAME_PATTERN)
    strength: float = Field(1.0, allow_inf_nan=False)


class EditRequest(_Request):
    model: str | None = Field(None, pattern=MODEL_NAME)
    latents: list[Latent] | None = Field(None, min_length=1, description="start latents (or give images)")
    images: list[str] | None = Field(None, min_length=1, description="base64 images, inverted first")
    directions: list[DirectionStrength] = Field(default=[], description="named vectors of the bundle")
    vector: Latent | None = Field(None, description="an arbitrary direction added with `vector_strength`")
    vector_strength: float = Field(1.0, allow_inf_nan=False)
    interpolate_steps: int | None = Field(None, ge=2, description="interpolate the first two latents in n steps")
    return_images: bool = True

    @field_validator("latents")
    @classmethod
    def _finite(cls, v: list[Latent] | None) -> list[Latent] | None:
        return _finite_latents(v)

    @field_validator("vector")
    @classmethod
    def _finite_vector(cls, v: Latent | None) -> Latent | None:
        _finite_latents([v] if v is not None else None, what="vector")
        return v


class EditedPublic(BaseModel):
    latent: Latent
    image_png: str | None = None


class EditResponse(BaseModel):
    model: str
    operation: Literal["directions", "interpolate"]
    results: list[EditedPublic]


class OutpaintRequest(_Request):
    model: str | None = Field(None, pattern=MODEL_NAME)
    patch: str = Field(description="base64 image of the centre patch")
    samples: int = Field(4, ge=1)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class OutpaintSample(BaseModel):
    image_png: str = Field(description="the full image, base64 PNG")
    z_edge: Latent = Field(description="the edge latent used (row k of N(0, I) from the seed)")


class OutpaintResponse(BaseModel):
    model: str
    seed: int
    patch_box: dict[str, int]
    samples: list[OutpaintSample]
    total_ms: float


Metric = Literal["psnr", "ssim", "ms_ssim", "class_consistency", "latent_norm"]
METRICS: tuple[str, ...] = get_args(Metric)


class JobCreate(_Request):
    kind: Literal["metrics", "invert"] = Field(
        "metrics", description="metrics: score DFI (the ICLR metric); invert: return the latents of every image"
    )
    model: str | None = Field(None, pattern=MODEL_NAME)
    dataset: Literal["fashion-mnist", "emoji"] | None = Field(
        None, description="this data set's split (default: the bundle's own data set)"
    )
    split: Literal["test", "train"] = "test"
    n: int = Field(1000, ge=1, description="the first n images of the split (the papers' protocol)")
    metrics: list[Metric] = Field(["psnr", "ssim"], description="kind metrics only")
    refine_steps: int = Field(0, ge=0)
    batch_size: int = Field(250, ge=1, le=4096)
    return_reconstructions: bool = Field(False, description="kind invert only: also G(z) as uint8 images")
    per_class: bool = Field(False, description="kind metrics, data-set splits only: every metric per true label, "
                            "FD per class (one n for every class) and the classes flagged far below the others "
                            "(dfi_core.per_class)")  # fmt: skip

    @field_validator("metrics")
    @classmethod
    def _some_metrics(cls, metrics: list[str]) -> list[str]:
        # An empty list used to be queued and "complete" with an empty result: a job that scores nothing.
        if not metrics:
            raise ValueError(f"name at least one of {', '.join(METRICS)}")
        return metrics

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> JobCreate:
        # Refused, not ignored: a client that sends metrics with an invert job expects scores it would not get.
        if self.kind == "invert" and "metrics" in self.model_fields_set:
            raise ValueError("metrics apply to kind 'metrics' only; an invert job returns latents")
        if self.kind == "metrics" and self.return_reconstructions:
            raise ValueError("return_reconstructions applies to kind 'invert' only")
        if self.kind == "invert" and self.per_class:
            raise ValueError("per_class applies to kind 'metrics' only; an invert job returns latents")
        return self


class ChunkCounts(BaseModel):
    total: int
    done: int
    running: int
    failed: int


class JobPublic(BaseModel):
    id: str
    kind: str = "metrics"
    status: str = Field(description="queued, active, complete, failed, aborting or aborted")
    progress: float = Field(description="0–1, aggregated over chunks")
    model: str | None = None
    created: float | None = None
    started: float | None = None
    completed: float | None = None
    attempts: int = Field(0, description="the most attempts any chunk took (1: none re-run)")
    chunks: ChunkCounts
    chunk_runs: int = Field(0, description="chunk computations started (> chunks.total: re-runs after a lost worker)")
    workers: list[str] = Field([], description="the workers that finished its chunks")
    result: dict[str, Any] | None = Field(None, description="metrics: the scores; invert: a summary and `download`")
    error: str | None = None
    request: dict[str, Any] = {}


class DirectionPublic(BaseModel):
    name: str
    description: str
    method: str
    counts: dict[str, int]


class ModelPublic(BaseModel):
    name: str
    dataset: str
    image: dict[str, Any]
    latent: dict[str, Any]
    graphs: dict[str, str] = Field(description="graph → ONNX Runtime provider in use")
    directions: list[DirectionPublic]
    class_names: list[str]
    outpaint: bool
    refinement: bool = Field(description="refine_steps > 0 possible in this process (torch installed)")


class ModelDetail(ModelPublic):
    manifest: dict[str, Any]
