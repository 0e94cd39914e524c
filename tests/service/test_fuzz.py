"""Property-based fuzzing of the OpenAPI schema (schemathesis): whatever the generated request, no 5xx.

Two kinds: each operation alone, and stateful sequences along the links schemathesis infers from the schema
(POST /jobs → GET / DELETE /jobs/{id} → GET /jobs/{id}/result; GET /models → /models/{name} and the /v2 model
routes), so generated ids and model names are real ones and the calls reach past the 404s.
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
STATEFUL_EXAMPLES = int(os.environ.get("DFI_FUZZ_STATEFUL_EXAMPLES", "3"))  # sequences, each up to 6 calls
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
    check(case, case.call())


def check(case, response, phase: str = "stateless") -> None:  # noqa: ANN001
    if REPORT:
        with open(REPORT, "a") as handle:
            handle.write(json.dumps({"operation": f"{case.method} {case.path}", "status": response.status_code,
                                     "phase": phase}) + "\n")  # fmt: skip
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"


def test_stateful_sequences_give_no_server_errors(fuzz_schema) -> None:
    machine = fuzz_schema.as_state_machine()
    assert any(name.startswith("POST_jobs___202") for name in dir(machine)), "no job links inferred"

    class NoServerErrors(machine):  # type: ignore[misc, valid-type]
        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:  # noqa: ANN001
            check(case, response, "stateful")  # the property under test: no 5xx (not schemathesis' other checks)

    NoServerErrors.run(settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=6, deadline=None,
                                         suppress_health_check=list(HealthCheck)))  # fmt: skip
