"""Prometheus metrics of the API (the worker exports its own job metrics on DFI_WORKER_METRICS_PORT).

A private registry per app, so that tests can build several apps in one process without clashing.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

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
        # The Open Inference Protocol (/v2, service/routers/v2.py), named after Triton's nv_inference_request_*,
        # nv_inference_count and nv_inference_exec_count; the two counts are read from dfi_inference_batch_size.
        self.v2_requests = Counter("dfi_v2_inference_requests_total", "V2 infer requests by V2 model and outcome",
                                   ["model", "outcome"], registry=r)  # fmt: skip
        r.register(V2Counts(self.batch_size))


class V2Counts:
    """dfi_v2_inference_count_total and dfi_v2_inference_exec_count_total per V2 model (BUNDLE.GRAPH, version 1):
    rows through the graph and graph executions (after micro-batching), whoever called it — the REST routes and /v2
    share one batcher per graph. count / exec_count is the average batch size. Both are read at scrape time from
    dfi_inference_batch_size (its _sum and _count), so they cannot drift from it."""

    def __init__(self, batch_size: Histogram) -> None:
        self.batch_size = batch_size

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> tuple[CounterMetricFamily, CounterMetricFamily]:
        labels = ["model", "version"]
        return (
            CounterMetricFamily("dfi_v2_inference_count", "rows inferred per V2 model", labels=labels),
            CounterMetricFamily("dfi_v2_inference_exec_count", "executions per V2 model (batches)", labels=labels),
        )

    def collect(self) -> Iterator[Metric]:
        count, executions = self._families()
        for family in self.batch_size.collect():
            for sample in family.samples:
                name = f"{sample.labels['model']}.{sample.labels['graph']}"
                if sample.name.endswith("_sum"):
                    count.add_metric([name, "1"], sample.value)
                elif sample.name.endswith("_count"):
                    executions.add_metric([name, "1"], sample.value)
        yield count
        yield executions


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
