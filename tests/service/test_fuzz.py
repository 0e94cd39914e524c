"""Property-based fuzzing of the OpenAPI schema (schemathesis): whatever the generated request, no 5xx.

Short here (a few examples per operation, in CI); `benchmarks/fuzz_service.sh` runs the long version.
Runs in process against the ASGI app with the shipped bundles and a real Redis (job routes enqueue for real).
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service.app import create_app
from tests.service.conftest import make_settings

EXAMPLES = int(os.environ.get("DFI_FUZZ_EXAMPLES", "15"))
REPORT = os.environ.get("DFI_FUZZ_REPORT")  # a JSON-lines file: one line per generated request (benchmarks/)


@pytest.fixture(scope="module")
def fuzz_app(redis_url: str):
    from fastapi.testclient import TestClient

    app = create_app(make_settings(redis_url, max_refine_steps=2, max_job_images=20, max_interpolation_steps=8))
    with TestClient(app):  # runs the lifespan: bundles loaded, queue connected
        yield app


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:
    response = case.call()
    if REPORT:
        with open(REPORT, "a") as handle:
            handle.write(json.dumps({"operation": f"{case.method} {case.path}", "status": response.status_code}) + "\n")
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
