"""docker/kserve/inferenceservice.yaml against KServe's own v1beta1 schema (vendored from the CRD of KServe v0.20.0,
see docker/kserve/vendor_schema.py), validated with jsonschema, plus the ties to this repo that no schema knows:
the readiness route exists in the service, the bundles are mounted read-only, the user is the image's."""

from __future__ import annotations

import ast
import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KSERVE = ROOT / "docker" / "kserve"
MANIFEST = KSERVE / "inferenceservice.yaml"
SCHEMA = KSERVE / "inferenceservice.v1beta1.schema.json"


def strict(schema: Any) -> Any:
    """The CRD schema as the API server applies it with field validation Strict (`kubectl apply --validate=strict`,
    the default since Kubernetes 1.27 warns, strict rejects): an object schema that lists its properties and does not
    preserve unknown fields rejects any other field. Without this a misspelt field would pass, because
    openAPIV3Schema never says additionalProperties: false (Kubernetes prunes unknown fields instead)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: ({k: strict(v) for k, v in value.items()} if key == "properties" else strict(value))
           for key, value in schema.items()}  # fmt: skip
    preserves = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserves:
        out["additionalProperties"] = False
    return out


@cache
def validator() -> jsonschema.Draft202012Validator:
    # No check_schema: checking 0.6 MB of schema against the 2020-12 meta-schema takes ~19 s here. The schema is
    # controller-gen's output; that it really constrains is shown by test_the_validation_rejects_broken_manifests.
    return jsonschema.Draft202012Validator(strict(json.loads(SCHEMA.read_text())))


def load_manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def errors(doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(doc)]


def container(doc: dict) -> dict:
    (serving,) = [c for c in doc["spec"]["predictor"]["containers"] if c["name"] == "kserve-container"]
    return serving


def test_the_vendored_schema_is_kserves_inferenceservice_v1beta1() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert "kserve/kserve" in schema["$comment"] and "v1beta1" in schema["$comment"]
    assert set(schema["properties"]["spec"]["properties"]) >= {"predictor", "transformer", "explainer"}
    assert "containers" in schema["properties"]["spec"]["properties"]["predictor"]["properties"]


def test_the_manifest_is_a_valid_inferenceservice() -> None:
    doc = load_manifest()
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert errors(doc) == []


@pytest.mark.parametrize(
    "break_it, expected",
    [
        (lambda d: container(d).update(readinesProbe=container(d).pop("readinessProbe")), "readinesProbe"),
        (lambda d: container(d)["readinessProbe"]["httpGet"].update(port=[8000]), "port"),
        (lambda d: container(d).pop("name"), "'name' is a required property"),
        (lambda d: d["spec"]["predictor"].update(minReplicas="one"), "minReplicas"),
    ],
    ids=["misspelt-field", "port-not-int-or-string", "container-without-name", "replicas-not-integer"],
)
def test_the_validation_rejects_broken_manifests(break_it, expected: str) -> None:
    doc = copy.deepcopy(load_manifest())
    break_it(doc)
    found = errors(doc)
    assert found and any(expected in e for e in found), found


def v2_routes() -> set[str]:
    """The GET paths of service/routers/v2.py, read from its source: importing the service costs seconds."""
    tree = ast.parse((ROOT / "service" / "routers" / "v2.py").read_text())
    prefix = next(
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "APIRouter"
        for kw in node.keywords
        if kw.arg == "prefix"
    )
    return {
        prefix + deco.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)
        for deco in node.decorator_list
        if isinstance(deco, ast.Call) and getattr(deco.func, "attr", None) == "get" and deco.args
    }


def test_probes_use_the_services_v2_health_routes_on_its_port() -> None:
    serving = container(load_manifest())
    env = {e["name"]: e["value"] for e in serving["env"]}
    routes = v2_routes()
    assert serving["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready" in routes
    assert serving["livenessProbe"]["httpGet"]["path"] in routes
    port = int(env["PORT"])
    assert [p["containerPort"] for p in serving["ports"]] == [port]
    assert serving["readinessProbe"]["httpGet"]["port"] == serving["livenessProbe"]["httpGet"]["port"] == port
    assert env["DFI_HOST"] == "0.0.0.0"  # the service's default 127.0.0.1 would be unreachable from the kubelet
    # Names the service reads (service/settings.py), as scripts/check_compose.sh requires for compose.
    assert all(name in ("PORT", "REDIS_URL") or name.startswith("DFI_") for name in env), env


def test_bundles_are_mounted_read_only_at_the_models_dir_and_the_user_is_the_images() -> None:
    doc = load_manifest()
    serving = container(doc)
    env = {e["name"]: e["value"] for e in serving["env"]}
    (mount,) = [m for m in serving["volumeMounts"] if m["mountPath"] == env["DFI_MODELS_DIR"]]
    assert mount["readOnly"] is True
    (volume,) = [v for v in doc["spec"]["predictor"]["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    # readOnlyRootFilesystem: every path the service writes must be a mounted volume.
    writable = {m["mountPath"] for m in serving["volumeMounts"] if not m.get("readOnly")}
    assert serving["securityContext"]["readOnlyRootFilesystem"] is True and {env["DFI_RESULTS_DIR"], "/tmp"} <= writable
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "docker" / "Dockerfile.api").read_text(), re.M)
    pod = doc["spec"]["predictor"]["securityContext"]
    assert user and (pod["runAsUser"], pod["runAsGroup"]) == (int(user[1]), int(user[2])) and pod["runAsNonRoot"]
