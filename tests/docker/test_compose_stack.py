"""`docker compose up` for real, on podman: docker/compose_e2e.py's steps under pytest (slow: minutes, most of them
image builds; ~1 min when podman's layer cache is warm). Builds the api and worker images (and redis from Debian on a
machine without registry access), starts the stack, inverts real Fashion-MNIST test images through the published
port, runs a metric job on the worker, restarts redis, checks users, mounts and healthchecks inside the containers,
and tears it all down. Run it with:  python3 -m pytest tests/docker/test_compose_stack.py -m slow -s
Set DFI_E2E_UPSTREAM=1 to run docker-compose.yml alone (upstream bases and PyTorch's index, for machines that reach
them)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def load_e2e():
    spec = importlib.util.spec_from_file_location("compose_e2e", ROOT / "docker" / "compose_e2e.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolves the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_compose_stack_builds_serves_runs_jobs_and_survives_a_redis_restart() -> None:
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (docker/README.md: apt-get install -y podman runc)")
    if importlib.util.find_spec("podman_compose") is None:
        pytest.skip("podman-compose is not installed (pip install -e '.[dev]')")
    e2e = load_e2e()
    stack = e2e.Stack(project=f"dfitest{uuid.uuid4().hex[:6]}", port=free_port(),
                      local=not os.environ.get("DFI_E2E_UPSTREAM"))  # fmt: skip
    e2e.run(stack)  # every step asserts; the stack is down again afterwards, also on failure

    results, timings = stack.results, stack.timings
    assert results["readyz"]["status"] == "ready"
    assert results["invert"]["psnr_mean_db"] > e2e.PSNR_BOUND_DB, results["invert"]
    assert abs(results["metric_job"]["psnr"] - results["metric_job"]["manifest_psnr"]) < 1e-3
    assert results["after_redis_restart"] == {"status": "complete", "same_result": True}
    for service in ("redis", "api", "worker"):
        assert results["inside"][service]["uid"] != "0" and results["inside"][service]["healthcheck_run"] == 0
    for service in ("api", "worker"):
        assert results["inside"][service]["models_rw"] is False
    assert {"build_s", "start_to_ready_s", "start_to_first_answer_s", "metric_job_s"} <= set(timings)
    assert stack.leftovers() == [], "containers or volumes left behind by `down -v`"
