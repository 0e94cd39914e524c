"""The API through FastAPI's TestClient on the shipped bundles and a real Redis: contracts and 4xx paths."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.conftest import decode_png, make_settings, png_b64, png_bytes


def test_invert_json_returns_latents_reconstructions_and_a_request_id(client: TestClient, fashion_test) -> None:
    response = client.post("/invert", json={"images": [png_b64(fashion_test.images[i]) for i in range(3)]},
                           headers={"X-Request-ID": "abc-123"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == "abc-123"
    body = response.json()
    assert body["model"] == "fashion-mnist" and len(body["results"]) == 3
    for result in body["results"]:
        assert len(result["latent"]) == 64 and result["method"] == "dfi"
        assert decode_png(result["reconstruction_png"]).shape == (28, 28, 1)
    assert body["timings"]["total_ms"] >= body["timings"]["invert_ms"] > 0


def test_multipart_and_json_give_the_same_latent(client: TestClient, fashion_test) -> None:
    image = fashion_test.images[7]
    as_json = client.post("/invert", json={"images": [png_b64(image)], "return_reconstruction": False}).json()
    as_file = client.post("/invert", files=[("images", ("x.png", png_bytes(image), "image/png"))],
                          data={"return_reconstruction": "false"}).json()  # fmt: skip
    assert as_file["results"][0]["reconstruction_png"] is None
    np.testing.assert_allclose(as_json["results"][0]["latent"], as_file["results"][0]["latent"], atol=1e-6)


def test_refinement_lowers_the_reconstruction_error(client: TestClient, fashion_test) -> None:
    images = [fashion_test.images[i] for i in range(4)]
    target = np.stack(images).astype(np.float64)
    errors = {}
    for steps in (0, 20):
        body = client.post("/invert", json={"images": [png_b64(im) for im in images], "refine_steps": steps}).json()
        recon = np.stack([decode_png(r["reconstruction_png"]) for r in body["results"]]).astype(np.float64)
        errors[steps] = ((recon - target) ** 2).mean()
        assert body["results"][0]["method"] == ("dfi_opt" if steps else "dfi")
    assert errors[20] < errors[0]


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"images": []}, 422, "images"),
        ({"images": ["%%%"]}, 422, "base64"),
        ({"images": ["aGVsbG8="]}, 415, "image"),
        ({"images": ["aGVsbG8="], "model": "../etc"}, 422, "model"),
        ({"images": ["aGVsbG8="], "model": "nope"}, 404, "unknown model"),
        ({"images": ["aGVsbG8="], "refine_steps": 100000}, 422, "max_refine_steps"),
        ({"images": ["aGVsbG8="], "extra": 1}, 422, "extra"),
    ],
)
def test_invert_rejects_bad_input_with_a_named_4xx(client: TestClient, payload, status, needle) -> None:
    response = client.post("/invert", json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["request_id"]


def test_too_many_images_names_the_limit(redis_url: str, fashion_test) -> None:
    with TestClient(create_app(make_settings(redis_url, max_images_per_request=2))) as small:
        response = small.post("/invert", json={"images": [png_b64(fashion_test.images[0])] * 3})
    assert response.status_code == 413
    assert response.json()["error"]["limit"] == {"max_images_per_request": 2}


def test_body_over_the_limit_is_413_before_it_is_read(redis_url: str) -> None:
    with TestClient(create_app(make_settings(redis_url, max_body_bytes=4096, max_job_upload_bytes=2048))) as small:
        body = b"{" + b" " * 10_000 + b"}"
        response = small.post("/invert", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["limit"] == {"max_body_bytes": 4096}


def test_wrong_content_type_is_415(client: TestClient) -> None:
    assert client.post("/invert", content=b"x", headers={"content-type": "text/plain"}).status_code == 415


def test_edit_with_a_direction_adds_strength_times_the_vector(client: TestClient) -> None:
    z = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    detail = client.get("/models/fashion-mnist").json()
    name = detail["directions"][0]["name"]
    body = client.post("/edit", json={"latents": z.tolist(), "directions": [{"name": name, "strength": 0.5}],
                                      "return_images": False}).json()  # fmt: skip
    vector = np.load(f"models/fashion-mnist/{detail['manifest']['directions'][name]['file']}")
    np.testing.assert_allclose(np.array([r["latent"] for r in body["results"]]), z + 0.5 * vector, atol=1e-5)


def test_interpolation_walks_from_the_first_latent_to_the_second(client: TestClient) -> None:
    a, b = np.zeros(64), np.ones(64)
    body = client.post("/edit", json={"latents": [a.tolist(), b.tolist()], "interpolate_steps": 5}).json()
    latents = np.array([r["latent"] for r in body["results"]])
    assert body["operation"] == "interpolate" and latents.shape == (5, 64)
    np.testing.assert_allclose(latents[:, 0], [0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)
    assert decode_png(body["results"][0]["image_png"]).shape == (28, 28, 1)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"latents": [[0.0] * 3], "vector": [0.0] * 64}, "64 values"),
        ({"latents": [[0.0] * 64], "directions": [{"name": "no_such", "strength": 1}]}, "no direction"),
        ({"latents": [[0.0] * 64], "directions": [{"name": "shirt_to_dress", "strength": 1e6}]}, "max_strength"),
        ({"latents": [[0.0] * 64]}, "give 'directions'"),
        ({"latents": [[0.0] * 64], "interpolate_steps": 4}, "exactly two"),
        ({"latents": [[0.0] * 64], "images": ["aGk="], "vector": [0.0] * 64}, "exactly one"),
        ({"latents": [[0.0] * 64, [0.0] * 64], "interpolate_steps": 10_000}, "max_interpolation_steps"),
    ],
)
def test_edit_rejects_bad_input(client: TestClient, payload, needle) -> None:
    response = client.post("/edit", json=payload)
    assert response.status_code == 422 and needle in response.json()["error"]["message"], response.text


def test_non_finite_latents_are_rejected(client: TestClient) -> None:
    # JSON has no NaN; Python's json module writes it anyway, as do many clients.
    raw = '{"latents": [[NaN' + ", 0.0" * 63 + ']], "vector": [' + ", ".join(["0.0"] * 64) + "]}"
    response = client.post("/edit", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_outpaint_without_an_scgan_graph_is_a_clear_404(client: TestClient, fashion_test) -> None:
    response = client.post("/outpaint", json={"model": "emoji", "patch": png_b64(fashion_test.images[0])})
    assert response.status_code == 404 and "no SCGAN outpaint graph" in response.json()["error"]["message"]


def test_models_list_and_detail(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/models").json()}
    assert {"fashion-mnist", "emoji"} <= set(models)
    fashion = models["fashion-mnist"]
    assert fashion["latent"]["size"] == 64 and fashion["graphs"]["invert"] == "CPUExecutionProvider"
    assert "dress" in fashion["class_names"] and any(d["name"] == "shirt_to_dress" for d in fashion["directions"])
    assert client.get("/models/emoji").json()["manifest"]["image"]["height"] == 64
    assert client.get("/models/missing").status_code == 404


def test_readyz_and_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["degraded"] == [] and "answers" in ready["jobs"]


def test_prometheus_metrics_count_requests_batches_and_providers(client: TestClient, fashion_test) -> None:
    client.post("/invert", json={"images": [png_b64(fashion_test.images[0])]})
    text = client.get("/metrics").text
    assert 'dfi_http_requests_total{method="POST",route="/invert",status="200"}' in text
    assert 'dfi_inference_batch_size_count{graph="invert",model="fashion-mnist"}' in text
    assert 'dfi_execution_provider{graph="invert",model="fashion-mnist",provider="CPUExecutionProvider"} 1.0' in text
    assert 'dfi_job_queue_depth{state="queued"}' in text and "dfi_redis_up 1.0" in text


def test_an_unexpected_error_is_a_500_with_the_request_id_and_counted(redis_url: str) -> None:
    # A bug in a route (simulated: a route that raises; no real input produces one, which is the point) must still
    # answer with the request's id in body and header, and be counted as a 500 by the pure-ASGI RequestContext.
    app = create_app(make_settings(redis_url))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "trace-500"})
        assert response.status_code == 500 and response.headers["X-Request-ID"] == "trace-500"
        assert response.json()["error"] == {"message": "internal error (RuntimeError)", "request_id": "trace-500"}
        text = client.get("/metrics").text
        assert 'dfi_http_requests_total{method="GET",route="/boom",status="500"} 1.0' in text


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/invert", "/edit", "/outpaint", "/jobs", "/jobs/upload", "/jobs/{job_id}", "/models", "/readyz"):
        assert path in paths
    assert "multipart/form-data" in paths["/invert"]["post"]["requestBody"]["content"]


def test_job_validation(client: TestClient) -> None:
    assert client.post("/jobs", json={"n": 10**9}).json()["error"]["limit"] == {"max_job_images": 100_000}
    wrong = client.post("/jobs", json={"model": "fashion-mnist", "dataset": "emoji"})
    assert wrong.status_code == 422 and "trained on fashion-mnist" in wrong.json()["error"]["message"]
    assert client.get("/jobs/" + "0" * 32).status_code == 404
    assert client.get("/jobs/not-an-id").status_code == 422
    assert client.post("/jobs", json={"metrics": ["fid"]}).status_code == 422


def test_redis_down_job_routes_503_and_inference_keeps_serving(fashion_test) -> None:
    from service.embedded_redis import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with TestClient(create_app(make_settings(dead))) as offline:
        response = offline.post("/jobs", json={"n": 10})
        assert response.status_code == 503 and "unreachable" in response.json()["error"]["message"]
        assert offline.get("/jobs/" + "0" * 32).status_code == 503
        ready = offline.get("/readyz")
        assert ready.status_code == 200 and any("unreachable" in d for d in ready.json()["degraded"])
        assert offline.post("/invert", json={"images": [png_b64(fashion_test.images[0])]}).status_code == 200
        assert "dfi_redis_up 0.0" in offline.get("/metrics").text


def _zip(files: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_upload_job_accepts_a_zip_and_refuses_bombs_and_non_zips(client: TestClient, fashion_test) -> None:
    archive = _zip({f"img{i}.png": png_bytes(fashion_test.images[i]) for i in range(3)})
    accepted = client.post("/jobs/upload", files={"archive": ("a.zip", archive, "application/zip")},
                           data={"metrics": "psnr,ssim"})  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["request"]["n"] == 3 and "images_npz" not in accepted.json()["request"]
    bomb = _zip({"big.png": b"\0" * (9 * 1024 * 1024)})  # inflates past max_image_bytes (8 MiB), tiny compressed
    refused = client.post("/jobs/upload", files={"archive": ("b.zip", bomb, "application/zip")})
    assert refused.status_code == 413 and refused.json()["error"]["limit"] == {"max_image_bytes": 8 * 1024 * 1024}
    not_zip = client.post("/jobs/upload", files={"archive": ("c.zip", b"not a zip", "application/zip")})
    assert not_zip.status_code == 415


def test_outpaint_is_reproducible_by_seed_and_returns_the_latents_used(client: TestClient, fashion_test) -> None:
    patch = fashion_test.images[0][7:21, 7:21]  # the manifest's 14×14 box at (7, 7)
    body = {"model": "fashion-mnist", "patch": png_b64(patch), "samples": 3, "seed": 5}
    first = client.post("/outpaint", json=body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["patch_box"] == {"top": 7, "left": 7, "height": 14, "width": 14} and len(answer["samples"]) == 3
    assert all(decode_png(s["image_png"]).shape == (28, 28, 1) and len(s["z_edge"]) == 32 for s in answer["samples"])
    assert client.post("/outpaint", json=body).json()["samples"] == answer["samples"]  # same seed, same images
    other = client.post("/outpaint", json={**body, "seed": 6}).json()["samples"]
    assert [s["image_png"] for s in other] != [s["image_png"] for s in answer["samples"]]
    expected_z = np.random.default_rng(5).standard_normal((3, 32)).astype(np.float32)
    np.testing.assert_allclose([s["z_edge"] for s in answer["samples"]], expected_z, atol=1e-6)
    too_many = client.post("/outpaint", json={**body, "samples": 10_000})
    assert too_many.status_code == 422 and too_many.json()["error"]["limit"] == {"max_latents_per_request": 256}
