"""The Open Inference Protocol (/v2, service/routers/v2.py + service/v2.py) with the real Triton client.

`tritonclient.http` (sync, geventhttpclient) and `tritonclient.http.aio` (aiohttp) against a real `python -m service`
process serving both shipped bundles over real HTTP, with an API key: health, metadata, inference on every graph
with binary and JSON tensors, compressed bodies, errors as `InferenceServerException` with the service's message,
and latents equal to POST /invert's. The protocol's corner cases (byte counts, malformed tensors, limits) go
through FastAPI's TestClient on an in-process app, where a raw body is easiest to write.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import zlib

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from dfi_core.bundle import load_bundle
from dfi_core.preprocessing import to_model_range
from service import v2
from service.app import create_app
from service.routers import v2 as v2_routes
from tests.service.conftest import MODELS, LiveAPI, make_settings, png_b64

KEY = "v2-test-key-0123456789"
PUBLIC = ["/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"]
MAX_IMAGES, MAX_LATENTS = 8, 16
GRAPHS = {
    "fashion-mnist": ["invert", "generator", "discriminator_features", "outpaint", "classifier"],
    "emoji": ["invert", "generator", "discriminator_features", "classifier"],
}
V2_MODELS = [f"{bundle}.{graph}" for bundle, graphs in GRAPHS.items() for graph in graphs]
# The service's session and a reference session of the same graph on the same rows: equal here (max |Δ| 0.0
# measured on every graph), but the micro-batcher may merge concurrent calls into another batch size, and ONNX
# Runtime may then block and sum in another order; 1e-5 is a few float32 ulps at the largest outputs (|x| ~ 25,
# emoji's D^f features) and far below any real fault (a wrong row or input is off by > 1e-2). Tensors cross the
# wire exactly: binary is the float32 bytes, JSON a float32's value as a double, which parses back to it.
ATOL = 1e-5


def auth() -> dict[str, str]:
    """A fresh headers dict per call: tritonclient's infer writes Inference-Header-Content-Length and
    Content-Encoding into the dict it is given, which would then go with the next request."""
    return {"X-API-Key": KEY}


def with_v2(app: FastAPI) -> FastAPI:
    """The V2 router and its error shape, unless service/app.py mounts them already."""
    if not any(getattr(route, "original_router", None) is v2_routes.router or getattr(route, "path", "") == "/v2"
               for route in app.routes):  # fmt: skip
        app.include_router(v2_routes.router)
    if not any(middleware.cls is v2_routes.V2ErrorShape for middleware in app.user_middleware):
        app.add_middleware(v2_routes.V2ErrorShape)
    return app


@pytest.fixture(scope="module")
def live(redis_url: str, tmp_path_factory: pytest.TempPathFactory):
    api = LiveAPI(make_settings(redis_url), tmp_path_factory.mktemp("v2") / "api.log", ("fashion-mnist", "emoji"),
                  DFI_API_KEYS=KEY, DFI_PUBLIC_PATHS=json.dumps(PUBLIC), DFI_MAX_IMAGES_PER_REQUEST=str(MAX_IMAGES),
                  DFI_MAX_LATENTS_PER_REQUEST=str(MAX_LATENTS), DFI_REFINEMENT_WARM_UP="false")  # fmt: skip
    yield api
    api.stop()


@pytest.fixture(scope="module")
def sync_client(live: LiveAPI):
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def reference():
    """Each graph opened here by the bundle's own loader: what the service's graphs must compute."""
    bundles = {name: load_bundle(MODELS / name) for name in GRAPHS}
    return {f"{b}.{g}": bundles[b].open_graph(g) for b, graphs in GRAPHS.items() for g in graphs}


@pytest.fixture(scope="module")
def inputs(fashion_test, reference) -> dict[str, dict[str, np.ndarray]]:
    """3 rows for every input of every V2 model: real Fashion-MNIST images, N(0, I) latents, uniform emoji-sized
    images (no emoji data set needed)."""
    rng = np.random.default_rng(0)
    images = to_model_range(fashion_test.images[:3])
    feeds: dict[str, dict[str, np.ndarray]] = {}
    for name, graph in reference.items():
        feeds[name] = {}
        for input_name, shape in zip(graph.input_names, graph.input_shapes, strict=True):
            dims = (3, *shape[1:])
            if input_name == "image" and name.startswith("fashion-mnist"):
                array = images
            elif input_name == "patch":
                array = np.ascontiguousarray(images[:, :, 7:21, 7:21])
            elif len(dims) == 4:
                array = rng.uniform(-1, 1, dims).astype(np.float32)
            else:
                array = rng.standard_normal(dims).astype(np.float32)
            feeds[name][input_name] = array
    return feeds


def _triton_inputs(feed: dict[str, np.ndarray], binary: bool, module=triton) -> list:  # noqa: ANN001
    tensors = []
    for name, array in feed.items():
        tensor = module.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return tensors


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# --- The real client against a real process ------------------------------------------------------------------


def test_health_server_and_model_metadata(sync_client, reference) -> None:
    # /v2/health/* are public here (DFI_PUBLIC_PATHS), like /healthz; everything else needs the key.
    assert sync_client.is_server_live() and sync_client.is_server_ready()
    server = sync_client.get_server_metadata(headers=auth())
    assert server["name"] == "dfi" and server["version"] and "binary_tensor_data" in server["extensions"]
    for name, graph in reference.items():
        assert sync_client.is_model_ready(name, headers=auth()), name
        assert sync_client.is_model_ready(name, "1", headers=auth()), name
        meta = sync_client.get_model_metadata(name, "1", headers=auth())
        assert meta["name"] == name and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
        assert meta["inputs"] == [{"name": n, "datatype": "FP32", "shape": [-1, *s[1:]]}
                                  for n, s in zip(graph.input_names, graph.input_shapes, strict=True)]  # fmt: skip
        assert meta["outputs"] == [{"name": graph.output_name, "datatype": "FP32",
                                    "shape": [-1, *graph.output_shape[1:]]}]  # fmt: skip
    assert [i["name"] for i in sync_client.get_model_metadata("fashion-mnist.outpaint", headers=auth())["inputs"]] == [
        "patch", "z_edge"]  # fmt: skip
    assert not sync_client.is_model_ready("fashion-mnist.invert", "2", headers=auth())
    assert not sync_client.is_model_ready("fashion-mnist.invert", headers={})  # no key: 401
    assert not sync_client.is_model_ready("fashion-mnist.nothing", headers=auth())
    with pytest.raises(InferenceServerException) as caught:
        sync_client.get_model_metadata("emoji.outpaint", headers=auth())  # emoji has no SCGAN
    assert caught.value.status() == "404" and "unknown model 'emoji.outpaint'" in caught.value.message()
    # Every graph each manifest lists is a V2 model, and the 404 names them all.
    listed = [f"{b}.{g}" for b in GRAPHS for g in load_bundle(MODELS / b, verify=False).manifest.graphs.entries()]
    assert sorted(listed) == sorted(V2_MODELS) == sorted(reference)
    assert caught.value.message().endswith(f"models (BUNDLE.GRAPH): {sorted(V2_MODELS)}")
    with pytest.raises(InferenceServerException) as caught:
        sync_client.get_model_metadata("emoji.invert", "2", headers=auth())
    assert caught.value.status() == "404" and "no version '2'" in caught.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_every_graph_of_both_bundles(sync_client, reference, inputs, binary: bool) -> None:
    for name, graph in reference.items():
        feed = inputs[name]
        outputs = None if binary else [triton.InferRequestedOutput(graph.output_name, binary_data=False)]
        result = sync_client.infer(name, _triton_inputs(feed, binary), outputs=outputs, request_id=f"r-{name}",
                                   headers=auth())  # fmt: skip
        response = result.get_response()
        assert response["id"] == f"r-{name}" and response["model_name"] == name and response["model_version"] == "1"
        (output,) = response["outputs"]
        assert ("parameters" in output) is binary and ("data" in output) is not binary  # the wire format asked for
        got = result.as_numpy(graph.output_name)
        want = graph(*feed.values())
        assert got.dtype == np.float32 and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=name)


def test_invert_latents_equal_post_invert(live: LiveAPI, sync_client, fashion_test) -> None:
    """The same 8 images: V2 takes the model-range tensor, POST /invert the PNGs it decodes to the same tensor
    (lossless PNG, 28×28 already: no resize). Same graph, same batch of 8 through the same batcher: ≤ 1e-6."""
    images = fashion_test.images[10:18]
    rest = httpx.post(f"{live.url}/invert", json={"images": [png_b64(image) for image in images]}, headers=auth(),
                      timeout=30)  # fmt: skip
    assert rest.status_code == 200, rest.text
    want = np.array([r["latent"] for r in rest.json()["results"]], dtype=np.float32)
    x = to_model_range(images)
    for binary in (True, False):
        outputs = [triton.InferRequestedOutput("z", binary_data=binary)]
        z = sync_client.infer("fashion-mnist.invert", _triton_inputs({"image": x}, binary), outputs=outputs,
                              headers=auth()).as_numpy("z")  # fmt: skip
        assert z.shape == (8, 64)
        np.testing.assert_allclose(z, want, rtol=0, atol=1e-6)


def test_compressed_requests_and_responses(sync_client, reference, inputs) -> None:
    name = "fashion-mnist.outpaint"
    want = reference[name](*inputs[name].values())
    for request_coding in ("gzip", "deflate"):
        for response_coding in ("gzip", "deflate", None):
            got = sync_client.infer(name, _triton_inputs(inputs[name], True), headers=auth(),
                                    request_compression_algorithm=request_coding,
                                    response_compression_algorithm=response_coding).as_numpy("image")  # fmt: skip
            np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_errors_are_inference_server_exceptions_with_the_message(sync_client) -> None:
    def refused(model: str, feed: dict[str, np.ndarray], datatype: str = "FP32", headers=None) -> tuple[str, str]:  # noqa: ANN001
        tensors = []
        for name, array in feed.items():
            tensor = triton.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        with pytest.raises(InferenceServerException) as caught:
            sync_client.infer(model, tensors, headers=auth() if headers is None else headers)
        return caught.value.status(), caught.value.message()

    image = np.zeros((1, 1, 28, 28), np.float32)
    status, message = refused("fashion-mnist.invert", {"image": np.zeros((1, 1, 27, 28), np.float32)})
    assert status == "400" and "shape [1, 1, 27, 28] does not match [-1, 1, 28, 28]" in message
    status, message = refused("fashion-mnist.invert", {"image": np.zeros((MAX_IMAGES + 1, 1, 28, 28), np.float32)})
    assert status == "413" and f"batch {MAX_IMAGES + 1} > max_images_per_request ({MAX_IMAGES})" in message
    status, message = refused("emoji.generator", {"z": np.zeros((MAX_LATENTS + 1, 128), np.float32)})
    assert status == "413" and f"> max_latents_per_request ({MAX_LATENTS})" in message
    status, message = refused("fashion-mnist.invert", {"image": image.astype(np.float64)}, "FP64")
    assert status == "400" and "datatype 'FP64'" in message and "takes FP32" in message
    status, message = refused("fashion-mnist.invert", {"img": image})
    assert status == "400" and "unknown input 'img'" in message and "['image']" in message
    status, message = refused("fashion-mnist.outpaint", {"patch": np.zeros((2, 1, 14, 14), np.float32)})
    assert status == "400" and "missing ['z_edge']" in message
    status, message = refused("fashion-mnist.outpaint", {"patch": np.zeros((2, 1, 14, 14), np.float32),
                                                         "z_edge": np.zeros((3, 32), np.float32)})  # fmt: skip
    assert status == "400" and "batch sizes differ" in message
    status, message = refused("fashion-mnist.nothing", {"image": image})
    assert status == "404" and "unknown model 'fashion-mnist.nothing'" in message
    # The security middleware's refusals, in the V2 shape (V2ErrorShape) so the client reads the message.
    status, message = refused("fashion-mnist.invert", {"image": image}, headers={})
    assert status == "401" and message.startswith("missing API key")
    status, message = refused("fashion-mnist.invert", {"image": image}, headers={"X-API-Key": "x" * 20})
    assert status == "403" and message == "API key not accepted"


def test_aio_client_and_v2_metrics(live: LiveAPI, reference, inputs) -> None:
    """The asyncio client, binary and JSON; 12 concurrent single-row calls of a batched graph are counted row by
    row, and their executions (merged by the micro-batcher, or not: timing) number between 1 and 12."""
    name = "emoji.classifier"
    feed = {"image": inputs[name]["image"][:1]}
    want = reference[name](*feed.values())

    async def main() -> None:
        client = triton_aio.InferenceServerClient(live.url.removeprefix("http://"))
        try:
            assert await client.is_server_live() and await client.is_server_ready()
            assert await client.is_model_ready(name, headers=auth())
            assert (await client.get_model_metadata(name, headers=auth()))["outputs"][0]["name"] == "logits"
            for binary in (True, False):
                outputs = [triton_aio.InferRequestedOutput("logits", binary_data=binary)]
                result = await client.infer(name, _triton_inputs(feed, binary, triton_aio), outputs=outputs,
                                            headers=auth())  # fmt: skip
                np.testing.assert_allclose(result.as_numpy("logits"), want, rtol=0, atol=ATOL)
            before = httpx.get(f"{live.url}/metrics").text
            calls = [client.infer(name, _triton_inputs(feed, True, triton_aio), headers=auth()) for _ in range(12)]
            for result in await asyncio.gather(*calls):
                np.testing.assert_allclose(result.as_numpy("logits"), want, rtol=0, atol=ATOL)
            tensor = triton_aio.InferInput("image", [1, 3, 64, 64], "FP16")
            tensor.set_data_from_numpy(feed["image"].astype(np.float16))
            with pytest.raises(InferenceServerException) as caught:
                await client.infer(name, [tensor], headers=auth())
            assert caught.value.status() == "400" and "datatype 'FP16'" in caught.value.message()
            after = httpx.get(f"{live.url}/metrics").text
        finally:
            await client.close()
        labels = {"model": name, "version": "1"}
        rows = _metric(after, "dfi_v2_inference_count_total", **labels) - _metric(
            before, "dfi_v2_inference_count_total", **labels)  # fmt: skip
        executions = _metric(after, "dfi_v2_inference_exec_count_total", **labels) - _metric(
            before, "dfi_v2_inference_exec_count_total", **labels)  # fmt: skip
        assert rows == 12 and 1 <= executions <= 12
        outcome = "dfi_v2_inference_requests_total"
        assert _metric(after, outcome, model=name, outcome="success") - _metric(
            before, outcome, model=name, outcome="success") == 12  # fmt: skip
        assert _metric(after, outcome, model=name, outcome="failure") - _metric(
            before, outcome, model=name, outcome="failure") == 1  # fmt: skip

    asyncio.run(main())


# --- The protocol's corners, in process ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(redis_url: str):
    settings = make_settings(redis_url, max_body_bytes=256 * 1024, max_images_per_request=MAX_IMAGES,
                             refinement_warm_up=False, models=["fashion-mnist"])  # fmt: skip
    with TestClient(with_v2(create_app(settings))) as client:
        yield client


def _binary_body(request: dict, blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(request).encode()
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}


def _z(rows: int = 2) -> np.ndarray:
    return np.random.default_rng(rows).standard_normal((rows, 64)).astype(np.float32)


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body  # the protocol's shape exactly
    return body["error"]


GENERATE = "/v2/models/fashion-mnist.generator/infer"


def test_json_tensors_flat_nested_and_binary_outputs(api: TestClient) -> None:
    z = _z(2)
    flat = {"inputs": [{"name": "z", "shape": [2, 64], "datatype": "FP32", "data": z.ravel().tolist()}], "id": "7"}
    first = api.post(GENERATE, json=flat)
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    body = first.json()
    assert body["id"] == "7" and body["outputs"][0]["shape"] == [2, 1, 28, 28]
    images = np.array(body["outputs"][0]["data"], dtype=np.float32).reshape(2, 1, 28, 28)
    nested = {"inputs": [{"name": "z", "shape": [2, 64], "datatype": "FP32", "data": z.tolist()}]}
    assert np.array_equal(np.array(api.post(GENERATE, json=nested).json()["outputs"][0]["data"], np.float32),
                          images.ravel())  # fmt: skip
    # Binary in, binary out on request: the JSON header, then the float32 bytes of the one output.
    request = {"inputs": [{"name": "z", "shape": [2, 64], "datatype": "FP32",
                           "parameters": {"binary_data_size": z.nbytes}}],
               "outputs": [{"name": "image", "parameters": {"binary_data": True}}]}  # fmt: skip
    raw, headers = _binary_body(request, [z.tobytes()])
    response = api.post(GENERATE, content=raw, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == images.nbytes == len(response.content) - length
    assert np.array_equal(np.frombuffer(response.content[length:], "<f4").reshape(2, 1, 28, 28), images)
    # binary_data_output for every output, no outputs listed; the version segment.
    request = {"inputs": flat["inputs"], "parameters": {"binary_data_output": True}}
    response = api.post("/v2/models/fashion-mnist.generator/versions/1/infer", json=request)
    assert response.headers["content-type"] == "application/octet-stream"
    assert np.array_equal(np.frombuffer(response.content[int(response.headers["inference-header-content-length"]):],
                                        "<f4").reshape(2, 1, 28, 28), images)  # fmt: skip


def _z_input(**fields) -> dict:
    return {"name": "z", "shape": [1, 64], "datatype": "FP32", **fields}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "invalid JSON in the inference request: Expecting property name"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b"", 400, "empty request body"),
        (b'{"inputs": []}', 400, "inputs must be a non-empty array"),
        (b'{"inputs": [{"name": "z"}], "id": 5}', 400, "id must be a string"),
        (json.dumps({"inputs": [_z_input(data=[0.5] * 63)]}), 400, "shape [1, 64] needs 64 values, data has 63"),
        (json.dumps({"inputs": [_z_input(data=["0.5"] * 64)]}), 400, "data must hold only FP32 numbers"),
        (json.dumps({"inputs": [_z_input(data=[0.5] * 63 + [True])]}), 400, "found booleans"),
        (json.dumps({"inputs": [_z_input(data=[[0.5] * 63, [0.5]])]}), 400, "got an irregular nesting"),
        (json.dumps({"inputs": [_z_input(data=[0.5] * 63 + [1e39])]}), 400, "1 NaN/inf value(s)"),
        ('{"inputs": [{"name": "z", "shape": [1, 64], "datatype": "FP32", "data": [NaN' + ", 0" * 63 + "]}]}", 400,
         "1 NaN/inf value(s)"),
        (json.dumps({"inputs": [_z_input(data=[0] * 64)], "outputs": [{"name": "x"}]}), 400,
         "unknown output 'x' for model fashion-mnist.generator; its outputs: ['image']"),
        (json.dumps({"inputs": [_z_input(data=[0] * 64)],
                     "outputs": [{"name": "image", "parameters": {"classification": 3}}]}), 400,
         "classification extension is not supported"),
        (json.dumps({"inputs": [_z_input(data=[0] * 64)], "parameters": {"binary_data_output": "yes"}}), 400,
         "parameters.binary_data_output must be true or false"),
        (json.dumps({"inputs": [_z_input(shape=[1, -1], data=[0] * 64)]}), 400, "array of non-negative integers"),
        (json.dumps({"inputs": [_z_input(shape=[0, 64], data=[])]}), 400, "an empty batch"),
        (json.dumps({"inputs": [_z_input(data=[0] * 64), _z_input(data=[0] * 64)]}), 400, "given twice"),
        (json.dumps({"inputs": [_z_input(parameters={"binary_data_size": 256})]}), 400,
         "no Inference-Header-Content-Length header"),
        (json.dumps({"inputs": [_z_input()]}), 400, "neither data nor parameters.binary_data_size"),
        (json.dumps({"inputs": [_z_input(datatype="BYTES", data=["a"] * 64)]}), 400,
         "datatype 'BYTES' (not a datatype this server decodes)"),
    ],
)  # fmt: skip
def test_malformed_requests_are_4xx_naming_the_problem(api: TestClient, body, status: int, needle: str) -> None:
    message = _error(api.post(GENERATE, content=body), status)
    assert needle in message, message


def test_binary_byte_counts_that_disagree(api: TestClient) -> None:
    z = _z(1)
    spec = {"name": "z", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": z.nbytes}}
    raw, headers = _binary_body({"inputs": [spec]}, [z.tobytes()])
    assert api.post(GENERATE, content=raw, headers=headers).status_code == 200
    # Fewer bytes than binary_data_size; more than the sizes add up to; a size the shape does not need.
    message = _error(api.post(GENERATE, content=raw[:-4], headers=headers), 400)
    assert "binary_data_size 256 at byte 0" in message and "only 252 bytes after the" in message
    message = _error(api.post(GENERATE, content=raw + b"\0" * 8, headers=headers), 400)
    assert "264 bytes after the" in message and "add up to 256" in message
    wrong = {**spec, "parameters": {"binary_data_size": 252}}
    raw2, headers2 = _binary_body({"inputs": [wrong]}, [z.tobytes()[:252]])
    message = _error(api.post(GENERATE, content=raw2, headers=headers2), 400)
    assert "needs 256 bytes, binary_data_size is 252" in message
    message = _error(api.post(GENERATE, content=raw, headers={"Inference-Header-Content-Length": str(len(raw) + 1)}),
                     400)  # fmt: skip
    assert f"Inference-Header-Content-Length is {len(raw) + 1}, but the body has only {len(raw)} bytes" in message
    message = _error(api.post(GENERATE, content=raw, headers={"Inference-Header-Content-Length": "12x"}), 400)
    assert "must be a byte count" in message
    both = {**spec, "data": z.ravel().tolist()}
    raw3, headers3 = _binary_body({"inputs": [both]}, [z.tobytes()])
    assert "both data and binary_data_size" in _error(api.post(GENERATE, content=raw3, headers=headers3), 400)


def test_content_encodings_and_body_limits(api: TestClient) -> None:
    z = _z(1)
    body = json.dumps({"inputs": [_z_input(data=z.ravel().tolist())]}).encode()
    plain = api.post(GENERATE, content=body).json()["outputs"][0]["data"]
    for coding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                           ("deflate", zlib.compress(body, wbits=-15))):  # fmt: skip
        response = api.post(GENERATE, content=packed, headers={"Content-Encoding": coding})
        assert response.status_code == 200 and response.json()["outputs"][0]["data"] == plain, coding
    # A small body that inflates past max_body_bytes (256 KiB here): refused once it passes, never fully inflated.
    bomb = gzip.compress(b" " * (4 * 1024 * 1024))
    message = _error(api.post(GENERATE, content=bomb, headers={"Content-Encoding": "gzip"}), 413)
    assert message == f"the gzip request body inflates to more than max_body_bytes ({256 * 1024} bytes)"
    message = _error(api.post(GENERATE, content=gzip.compress(body)[:-12], headers={"Content-Encoding": "gzip"}), 400)
    assert "truncated" in message
    assert "not valid gzip data" in _error(api.post(GENERATE, content=b"plain", headers={"Content-Encoding": "gzip"}),
                                           400)  # fmt: skip
    assert "unsupported Content-Encoding 'br'" in _error(
        api.post(GENERATE, content=body, headers={"Content-Encoding": "br"}), 415)  # fmt: skip
    # Larger than max_body_bytes as sent: app.BodyLimit's 413, in the V2 shape with the limit.
    message = _error(api.post(GENERATE, content=b" " * (256 * 1024 + 1)), 413)
    assert "max_body_bytes" in message and str(256 * 1024) in message
    # Streamed (chunked, no Content-Length): counted while it is read, the route's own 413.
    message = _error(api.post(GENERATE, content=iter([b" " * (200 * 1024), b" " * (100 * 1024)])), 413)
    assert message == f'request body larger than max_body_bytes (limit: {{"max_body_bytes": {256 * 1024}}})'


def test_unknown_paths_models_versions_and_failures_are_counted(api: TestClient) -> None:
    assert "no route GET /v2/nothing" in _error(api.get("/v2/nothing"), 404)
    message = _error(api.get("/v2/models/emoji.invert"), 404)  # emoji is not loaded in this app
    assert "unknown model 'emoji.invert'" in message and "fashion-mnist.discriminator_features" in message
    assert "no version '0'" in _error(api.post("/v2/models/fashion-mnist.generator/versions/0/infer", json={}), 404)
    assert api.get("/v2/models/fashion-mnist.outpaint/versions/1/ready").json() == {
        "name": "fashion-mnist.outpaint", "ready": True}  # fmt: skip
    assert api.get("/v2/health/live").json() == {"live": True} and api.get("/v2/health/ready").json() == {"ready": True}

    def count(name: str, **labels: str) -> float:
        return _metric(api.get("/metrics").text, name, **labels)

    model = {"model": "fashion-mnist.discriminator_features", "version": "1"}
    rows, executions = count("dfi_v2_inference_count_total", **model), count("dfi_v2_inference_exec_count_total",
                                                                                 **model)  # fmt: skip
    failures = count("dfi_v2_inference_requests_total", model=model["model"], outcome="failure")
    image = np.zeros((3, 1, 28, 28), np.float32)
    request = {"inputs": [{"name": "image", "shape": [3, 1, 28, 28], "datatype": "FP32",
                           "data": image.ravel().tolist()}]}  # fmt: skip
    for _ in range(2):  # a graph the registry does not open (not micro-batched): one execution per request
        output = api.post("/v2/models/fashion-mnist.discriminator_features/infer", json=request).json()["outputs"][0]
        assert output["name"] == "features" and output["shape"] == [3, 3648]
    assert api.post("/v2/models/fashion-mnist.discriminator_features/infer", json={}).status_code == 400
    assert count("dfi_v2_inference_count_total", **model) - rows == 6
    assert count("dfi_v2_inference_exec_count_total", **model) - executions == 2
    assert count("dfi_v2_inference_requests_total", model=model["model"], outcome="failure") - failures == 1
    assert count("dfi_v2_inference_requests_total", model="nope.x", outcome="failure") == 0  # no label per bad name


# --- The codec alone: whatever the bytes, a ProtocolError or tensors that fit ------------------------------------

_SIGNATURE = v2.Signature(
    "b.outpaint",
    (v2.TensorSpec("patch", "FP32", (-1, 1, 2, 2), ("max_images_per_request", 4)),
     v2.TensorSpec("z_edge", "FP32", (-1, 3), ("max_latents_per_request", 4))),
    (v2.TensorSpec("image", "FP32", (-1, 1, 4, 4)),),
)  # fmt: skip
_values = st.one_of(st.floats(width=32), st.integers(-(2**70), 2**70), st.booleans(), st.none(), st.text(max_size=3))
_data = st.recursive(st.lists(_values, max_size=16), lambda inner: st.lists(inner, max_size=4), max_leaves=40)
_tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["patch", "z_edge", "x"]), "datatype": st.sampled_from(["FP32", "FP64", "BYTES", 3]),
     "shape": st.one_of(st.lists(st.integers(-1, 6), max_size=5), st.just([2, 1, 2, 2]), st.just([2, 3]))},
    optional={"data": _data, "parameters": st.fixed_dictionaries(
        {}, optional={"binary_data_size": st.one_of(st.integers(-1, 64), st.just(32), st.just(24), st.text())})},
)  # fmt: skip
_request = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(_tensor, max_size=3), st.none(), st.text(max_size=2))},
    optional={"id": st.one_of(st.text(max_size=4), st.integers()),
              "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": st.one_of(st.booleans(),
                                                                                                 st.integers())}),
              "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["image", "y"])}), max_size=2)},
)  # fmt: skip


@st.composite
def _plausible(draw: st.DrawFn) -> tuple[bytes, str | None, dict[str, np.ndarray] | None]:
    """A well-formed request for _SIGNATURE (JSON or binary per input, flat or nested), then perhaps one mutation;
    the tensors it must decode to when unmutated."""
    batch = draw(st.integers(1, 4))
    floats = st.floats(-1e6, 1e6, width=32)
    arrays = {spec.name: np.array(draw(st.lists(floats, min_size=batch * math.prod(spec.shape[1:]),
                                                max_size=batch * math.prod(spec.shape[1:]))), np.float32
                                  ).reshape(batch, *spec.shape[1:]) for spec in _SIGNATURE.inputs}  # fmt: skip
    tensors, blobs = [], []
    for name, array in arrays.items():
        tensor = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
        if draw(st.booleans()):
            tensor["parameters"] = {"binary_data_size": array.nbytes}
            blobs.append(array.tobytes())
        else:
            tensor["data"] = array.tolist() if draw(st.booleans()) else array.ravel().tolist()
        tensors.append(tensor)
    request = {"inputs": tensors}
    mutation = draw(st.sampled_from([None, "size", "tail", "shape", "nan", "bool", "name", "drop", "batch"]))
    target = tensors[draw(st.integers(0, 1))]
    if mutation == "size":
        target.setdefault("parameters", {"binary_data_size": 0})["binary_data_size"] += draw(st.sampled_from([-4, 4]))
    elif mutation == "shape":
        target["shape"][-1] += 1
    elif mutation == "batch":
        target["shape"][0] = draw(st.sampled_from([0, 5, 10**12]))
    elif mutation in ("nan", "bool"):
        flat = np.array(target.pop("data", None) or arrays[target["name"]], np.float32).ravel().tolist()
        flat[draw(st.integers(0, len(flat) - 1))] = float("nan") if mutation == "nan" else True
        target["data"] = flat
        if target.pop("parameters", None):
            blobs.remove(arrays[target["name"]].tobytes())
    elif mutation == "name":
        target["name"] = "w"
    elif mutation == "drop":
        tensors.remove(target)
        if "parameters" in target:
            blobs.remove(arrays[target["name"]].tobytes())
    header = json.dumps(request).encode()
    tail = b"".join(blobs) + (b"\0" * 4 if mutation == "tail" else b"")
    return header + tail, str(len(header)) if blobs or draw(st.booleans()) else None, None if mutation else arrays


@given(case=_plausible())
@hypothesis_settings(max_examples=300, deadline=None)
def test_codec_decodes_what_it_is_sent_and_refuses_any_one_mistake(case) -> None:  # noqa: ANN001
    raw, length, want = case
    if want is None:
        with pytest.raises(v2.ProtocolError) as caught:
            v2.parse_infer_request(raw, length, _SIGNATURE)
        assert 400 <= caught.value.status < 500
        return
    parsed = v2.parse_infer_request(raw, length, _SIGNATURE)
    assert parsed.inputs.keys() == want.keys()
    for name, array in want.items():
        assert parsed.inputs[name].dtype == np.float32 and np.array_equal(parsed.inputs[name], array)


@given(request=_request, tail=st.binary(max_size=80), header=st.sampled_from(["exact", "none", "garbage", "long"]),
       coding=st.sampled_from([None, "gzip", "deflate", "br"]))  # fmt: skip
@hypothesis_settings(max_examples=400, deadline=None)
def test_codec_never_fails_other_than_with_a_protocol_error(request, tail: bytes, header: str, coding) -> None:  # noqa: ANN001
    text = json.dumps(request).encode()
    raw = text + tail
    length = {"exact": str(len(text)), "none": None, "garbage": "-3", "long": str(len(raw) + 5)}[header]
    packed = {None: raw, "gzip": gzip.compress(raw), "deflate": zlib.compress(raw), "br": raw}[coding]
    try:
        parsed = v2.parse_infer_request(v2.inflate(packed, coding, 1 << 20), length, _SIGNATURE)
    except v2.ProtocolError as error:
        assert 400 <= error.status < 500 and error.message
        return
    assert list(parsed.inputs) == ["patch", "z_edge"] and 1 <= parsed.batch <= 4
    for spec, array in zip(_SIGNATURE.inputs, parsed.inputs.values(), strict=True):
        assert array.dtype == np.float32 and array.shape == (parsed.batch, *spec.shape[1:])
        assert np.isfinite(array).all()
