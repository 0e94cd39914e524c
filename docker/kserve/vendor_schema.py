"""Vendors the schema that tests/docker/test_kserve_manifest.py validates docker/kserve/inferenceservice.yaml against.

Source: KServe's own CRD, config/crd/full/serving.kserve.io_inferenceservices.yaml of github.com/kserve/kserve at a
release tag (Apache-2.0). The CRD's `spec.versions[name=v1beta1].schema.openAPIV3Schema` is what the Kubernetes API
server checks an InferenceService against. This keeps that schema whole except for `description` texts (no part of
validation), and writes it as compact JSON (0.64 MB instead of the CRD's 1.96 MB of YAML), which loads in about 50 ms
where PyYAML takes seconds on the YAML (`python -m json.tool` pretty-prints it). Re-vendor for another release:

    git show v0.20.0:config/crd/full/serving.kserve.io_inferenceservices.yaml > /tmp/crd.yaml   # in a kserve clone
    python docker/kserve/vendor_schema.py /tmp/crd.yaml v0.20.0 1fb781055dd1567164358233e1125142ca6ef1fe
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).with_name("inferenceservice.v1beta1.schema.json")
SOURCE = "github.com/kserve/kserve config/crd/full/serving.kserve.io_inferenceservices.yaml"


def strip_descriptions(node: Any) -> Any:
    # Only a schema's own `description` goes; a *property* called "description" (under `properties`) stays.
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "properties":
                out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
            elif key != "description":
                out[key] = strip_descriptions(value)
        return out
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    return node


def main(crd_path: str, tag: str, commit: str) -> None:
    crd = yaml.load(Path(crd_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "InferenceService", crd_path
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
    schema["$comment"] = f"{SOURCE} at {tag} ({commit}), v1beta1 openAPIV3Schema without descriptions; Apache-2.0"
    OUT.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{OUT}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:4])
