"""Prometheus metrics of the API (the worker exports its own job metrics on DFI_WORKER_METRICS_PORT).

A private registry per app, so that tests can build several apps in one process without clashing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("dfi_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("dfi_http_request_seconds", "request latency", ["route", "method"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.inferences = Counter("dfi_inference_rows_total", "rows through a graph", ["model", "graph"], registry=r)
        self.batch_size = Histogram("dfi_inference_batch_size", "rows per graph call (after micro-batching)",
                                    ["model", "graph"], buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.provider = Gauge("dfi_execution_provider", "1 for the ONNX Runtime provider each graph runs on",
                              ["model", "graph", "provider"], registry=r)  # fmt: skip
        self.refinements = Counter("dfi_refinement_images_total", "images refined (DFI^opt)", ["model"], registry=r)
        self.queue_depth = Gauge("dfi_job_queue_depth", "SAQ jobs (chunks, merges) by state, from Redis",
                                 ["state"], registry=r)  # fmt: skip
        self.jobs_submitted = Counter("dfi_jobs_submitted_total", "jobs accepted (invert and metrics)", registry=r)
        self.redis_up = Gauge("dfi_redis_up", "1 when the job queue's Redis answered the last check", registry=r)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.job_seconds = Histogram(
            "dfi_job_seconds",
            "job chunk (one SAQ job: a slice of an invert or metric job) duration by outcome",
            ["outcome"],
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.jobs = Counter("dfi_jobs_total", "job chunks finished by outcome", ["outcome"], registry=r)
        self.images = Counter("dfi_job_images_total", "images computed by job chunks", registry=r)
