"""Refinement in the service from generator.onnx (onnx2torch) for a bundle without generator.safetensors, and the
400 for a bundle whose generator.onnx holds an op onnx2torch cannot convert — through the real app (TestClient,
real Redis) over a tmp models dir, and through the worker's scoring of one chunk."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
if importlib.util.find_spec("onnx2torch") is None:  # find_spec, not import: it would need torchvision
    pytest.skip("onnx2torch is not installed (the `worker` extra)", allow_module_level=True)

from fastapi.testclient import TestClient  # noqa: E402

from dfi_core.refinement import UnsupportedOpError  # noqa: E402
from service.app import create_app  # noqa: E402
from service.chunks import JobSpec, compute_chunk  # noqa: E402
from service.metrics import ApiMetrics  # noqa: E402
from service.registry import load_model  # noqa: E402
from tests.dfi_core.test_refinement import add_unsupported_op, copy_without_safetensors  # noqa: E402
from tests.service.conftest import MODELS, decode_png, make_settings, png_b64  # noqa: E402

PLAIN, SHRINK = "fashion-onnx", "fashion-shrink"  # no generator.safetensors; + an op onnx2torch cannot convert


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    copy_without_safetensors(MODELS / "fashion-mnist", root / PLAIN, name=PLAIN)
    add_unsupported_op(copy_without_safetensors(MODELS / "fashion-mnist", root / SHRINK, name=SHRINK).folder)
    return root


@pytest.fixture(scope="module")
def onnx_client(models_dir: Path, redis_url: str) -> Iterator[TestClient]:
    settings = make_settings(redis_url, models_dir=models_dir, default_model=PLAIN)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _errors(body: dict, images: list[np.ndarray]) -> float:
    recon = np.stack([decode_png(r["reconstruction_png"]) for r in body["results"]]).astype(np.float64)
    return float(((recon - np.stack(images).astype(np.float64)) ** 2).mean())


def test_invert_refines_from_generator_onnx_without_safetensors(onnx_client: TestClient, fashion_test) -> None:
    assert onnx_client.get("/models").status_code == 200
    images = [fashion_test.images[i] for i in range(4)]
    bodies = {}
    for steps in (0, 20):
        response = onnx_client.post("/invert", json={"model": PLAIN, "images": [png_b64(im) for im in images],
                                                     "refine_steps": steps})  # fmt: skip
        assert response.status_code == 200, response.text
        bodies[steps] = response.json()
    assert bodies[20]["results"][0]["method"] == "dfi_opt" and bodies[20]["timings"]["refine_ms"] > 0
    assert _errors(bodies[20], images) < _errors(bodies[0], images)
    model = onnx_client.app.state.registry.get(PLAIN)
    assert model.bundle.manifest.refinement is None
    assert model.refinement_generator().source == "onnx2torch"


def test_an_unconvertible_op_answers_400_naming_it_while_plain_inversion_works(
    onnx_client: TestClient, fashion_test
) -> None:
    image = png_b64(fashion_test.images[0])
    refused = onnx_client.post("/invert", json={"model": SHRINK, "images": [image], "refine_steps": 5})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert "Shrink (opset 17)" in error["message"] and error["limit"] == {"refine_steps": 0}
    plain = onnx_client.post("/invert", json={"model": SHRINK, "images": [image]})
    assert plain.status_code == 200 and plain.json()["results"][0]["method"] == "dfi"
    # Shrink(0, 0) is the identity: the same G(ẑ) as the bundle without it.
    same = onnx_client.post("/invert", json={"model": PLAIN, "images": [image]}).json()
    assert plain.json()["results"][0]["reconstruction_png"] == same["results"][0]["reconstruction_png"]


def test_the_worker_scores_with_the_onnx2torch_g_and_names_the_unconvertible_op(models_dir: Path, fashion_test):
    from service.sources import Batch

    settings = make_settings(None, models_dir=models_dir, default_model=PLAIN)
    refine, plain_spec = JobSpec("metrics", 10, 250, ("psnr",)), JobSpec("metrics", 0, 250, ("psnr",))
    batch = Batch([str(i) for i in range(4)], fashion_test.images[:4], None)
    plain = load_model(models_dir / PLAIN, settings, ApiMetrics())
    refined = compute_chunk(plain, batch, refine)["metric.psnr"]
    base = compute_chunk(plain, batch, plain_spec)["metric.psnr"]
    assert refined.mean() > base.mean()
    shrink = load_model(models_dir / SHRINK, settings, ApiMetrics())
    with pytest.raises(UnsupportedOpError, match=r"Shrink \(opset 17\)"):
        compute_chunk(shrink, batch, refine)
    np.testing.assert_allclose(compute_chunk(shrink, batch, plain_spec)["metric.psnr"], base)
