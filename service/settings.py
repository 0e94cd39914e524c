"""One pydantic-settings `Settings` for the API and the worker. Every field is an environment variable with the
prefix `DFI_` (e.g. `DFI_MODELS_DIR`), except the two conventional ones, `PORT` and `REDIS_URL`, which are also
read without a prefix. README.md lists them all (generated from this class: `python -m service --print-settings`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DFI_", extra="ignore", populate_by_name=True)

    # Serving
    host: str = Field("127.0.0.1", description="bind address of the API (0.0.0.0 in containers)")
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "DFI_PORT"), description="API port")
    models_dir: Path = Field(Path("models"), description="folder of model bundles; each sub-folder is one bundle")
    default_model: str = Field("fashion-mnist", description="bundle used when a request names none")
    models: list[str] | None = Field(None, description="load only these bundles (default: every bundle found)")
    verify_bundles: bool = Field(True, description="check every file's sha256 against the manifest at start-up")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="API and worker log level")
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="request line + headers larger than this: 431 (400 under h11)"
    )
    request_read_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="headers not complete, or no body bytes for this long: 408 and closed"
    )
    keep_alive_timeout_s: int = Field(5, ge=1, le=3600, description="idle keep-alive connections closed after this")
    max_connections: int = Field(1000, ge=1, description="open connections beyond this are answered 503 by uvicorn")

    # ONNX Runtime
    providers: list[str] | None = Field(
        None, description="execution providers in order (default: CUDA when this onnxruntime has it, then CPU)"
    )
    intra_op_threads: int | None = Field(None, ge=1, description="threads per ONNX operator (default: all cores)")
    intra_op_spinning: bool = Field(
        False,
        description="ONNX Runtime's pool threads busy-wait between calls (faster back-to-back big batches, but they "
        "take the cores decoding and the event loop need: off measured faster on every serving path here)",
    )

    # Dynamic micro-batching (as Triton's dynamic batcher / Ray Serve's @serve.batch)
    batching: bool = Field(True, description="merge concurrent requests into one graph call")
    max_batch_size: int = Field(256, ge=1, le=65536, description="rows per merged graph call")
    max_batch_delay_ms: float = Field(
        0.0, ge=0, le=1000, description="extra wait for company (0: merge only what queues during a running call)"
    )

    # Refinement (DFI^opt, IJCV eq. 2) — needs torch in this process
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads for refinement")
    malloc_mmap_threshold: int = Field(
        1024 * 1024,
        ge=0,
        le=32 * 1024 * 1024,
        description="glibc: blocks this large or larger are mmapped and given back to the OS when freed (else a "
        "decoded 4000×4000 image stays resident after its request: glibc raises its threshold on each free); "
        "0: glibc's adaptive default",
    )
    refinement_warm_up: bool = Field(
        True,
        description="at start-up, import torch and run one refinement step in the API (the first refine_steps > 0 "
        "request is then 1.5–3 s faster; costs ~295 MiB resident from the start — off: paid by the first such request)",
    )

    # Limits (each answered by a 4xx naming the limit)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest request body")
    max_images_per_request: int = Field(256, ge=1, description="images per /invert call")
    max_image_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest single encoded image")
    max_image_pixels: int = Field(
        16_000_000, ge=64, description="width × height checked before decoding (at most Pillow's 89.5 M)"
    )
    max_latents_per_request: int = Field(256, ge=1, description="latents per /edit or outpaint samples")
    max_refine_steps: int = Field(200, ge=0, description="refinement steps per request")
    request_deadline_s: float = Field(
        30.0, ge=0, description="work one /invert or /edit request may take (decoding, refinement); 0: no deadline"
    )
    max_interpolation_steps: int = Field(64, ge=2, description="frames of one interpolation")
    max_strength: float = Field(10.0, gt=0, description="largest absolute strength of one edit direction")
    max_job_images: int = Field(100_000, ge=1, description="images (n, or archive members) of one job")
    max_job_upload_bytes: int = Field(
        2 * 1024**3, ge=1024, description="largest uploaded job archive (its own limit: streamed to the result store)"
    )
    max_job_expanded_bytes: int = Field(
        8 * 1024**3, ge=1024, description="largest total an archive may inflate to (zip declared sizes, tar.gz)"
    )

    # Access (all off by default: a local research tool; turn on before exposing the port)
    api_keys: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="accepted keys (X-API-Key header or Authorization: Bearer), comma-separated or a JSON list, "
        "each at least 16 characters; empty: no auth",
    )
    public_paths: list[str] = Field(
        default=["/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"],
        description="paths that need no key (probes, scrapers; the V2 health routes are KServe's probes)",
    )
    rate_limit: str | None = Field(
        None, description="per key (or client IP without keys), `limits` syntax, e.g. '120/minute'; unset: off"
    )
    cors_origins: list[str] = Field(default=[], description="origins allowed by CORS; empty: CORS off")
    auth_failure_limit: str | None = Field(
        "10/minute",
        description="wrong API keys allowed per client IP (`limits` syntax) before 429 until the window passes; "
        "empty or 'off': off",
    )

    @field_validator("auth_failure_limit")
    @classmethod
    def _parse_auth_failure_limit(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "off"):
            return None
        from limits import parse

        try:
            parse(value)
        except ValueError as error:
            raise ValueError(f"DFI_AUTH_FAILURE_LIMIT: {error}") from None
        return value

    # Redis and jobs
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "DFI_REDIS_URL"),
        description="Redis for the job queue; unset → `scripts/run.sh` starts an embedded one",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        # Checked here, not at the first connection: redis-py's ValueError then surfaces as a start-up traceback.
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            shown = value.rsplit("@", 1)[-1][:80]  # never a password in the message (user:password@host)
            raise ValueError(f"must start with redis://, rediss:// or unix:// (got {shown!r})")
        return value

    queue_name: str = Field("dfi-metrics", description="SAQ queue (Redis key prefix) shared by API and workers")
    results_dir: Path = Field(
        Path("runs/results"), description="result store: uploads, chunk files and results (shared by API and workers)"
    )
    job_chunk_images: int = Field(
        1000, ge=1, description="images per chunk of a job (refinement shrinks it: ×10/(10+steps)); one SAQ job each"
    )
    store_sweep_s: int = Field(600, ge=1, description="how often a worker removes expired jobs from the result store")
    job_timeout_s: int = Field(3600, ge=1, description="a job running longer is failed")
    job_heartbeat_s: int = Field(30, ge=1, description="a job silent this long is swept and retried")
    job_retries: int = Field(3, ge=1, description="attempts before a job is failed")
    job_result_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long finished jobs are kept")
    worker_sweep_s: int = Field(10, ge=1, description="how often a worker looks for stuck jobs")
    worker_concurrency: int = Field(1, ge=1, description="jobs one worker runs at once")
    worker_metrics_port: int = Field(9101, ge=0, le=65535, description="worker's Prometheus port (0: off)")
    worker_metrics_host: str = Field(
        "127.0.0.1", description="bind address of the worker's Prometheus port (0.0.0.0 in containers)"
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        # NoDecode: DFI_API_KEYS=k1,k2 (what operators write) used to die in pydantic-settings' JSON decoding with a
        # traceback; a JSON list ('["k1", "k2"]') is still accepted. The keys themselves never enter a message.
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                keys = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("DFI_API_KEYS: not a valid JSON list; give keys comma-separated or as JSON") from None
            if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
                raise ValueError("DFI_API_KEYS: a JSON value must be a list of strings")
            return keys
        return [key.strip() for key in text.split(",") if key.strip()]

    @field_validator("api_keys")
    @classmethod
    def _long_api_keys(cls, keys: list[str]) -> list[str]:
        short = sum(len(key) < 16 for key in keys)
        if short:
            raise ValueError(f"DFI_API_KEYS: each key must be at least 16 characters ({short} of {len(keys)} shorter)")
        return keys

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.models is not None and self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not in models {self.models}")
        if self.rate_limit is not None:
            from limits import parse

            try:
                parse(self.rate_limit)
            except ValueError as error:
                raise ValueError(f"rate_limit {self.rate_limit!r}: {error}") from None
        if self.job_heartbeat_s >= self.job_timeout_s:
            raise ValueError("job_heartbeat_s must be shorter than job_timeout_s")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
