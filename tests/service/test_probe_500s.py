"""Inputs from the outside probe of issue 19 that answered 500: latents beyond float32 on /edit (item 1) and TIFF
modes Pillow decodes but did not convert — CIELab and premultiplied-alpha 'La' — on /invert (item 2)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dfi_core.bundle import ImageSpec
from service.images import decode_image
from tests.service.conftest import decode_png

GRAY = ImageSpec(channels=1, height=28, width=28)
RGB = ImageSpec(channels=3, height=64, width=64)


def _normal_with(value: float) -> list[float]:
    z = [0.1] * 64
    z[17] = value
    return z


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"latents": [[1e308] * 64], "vector": [0.0] * 64}, "latent 0 value 0 (1e+308) is outside the float32"),
        ({"latents": [[3.5e38] * 64], "vector": [0.0] * 64}, "latent 0 value 0 (3.5e+38) is outside the float32"),
        ({"latents": [[-1e308] * 64], "vector": [0.0] * 64}, "latent 0 value 0 (-1e+308) is outside the float32"),
        ({"latents": [[0.0] * 64, _normal_with(1e308)], "vector": [0.0] * 64}, "latent 1 value 17 (1e+308)"),
        ({"latents": [[0.0] * 64], "vector": _normal_with(-4e38)}, "vector value 17 (-4e+38) is outside"),
        ({"latents": [[0.0] * 64, [1e308] * 64], "interpolate_steps": 3}, "latent 1 value 0"),
    ],
)
def test_latents_beyond_float32_are_a_422_naming_the_range(client: TestClient, payload, needle) -> None:
    response = client.post("/edit", json=payload, headers={"X-Request-ID": "probe-1"})
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert needle in message and "±3.4028235e+38" in message, message
    assert response.headers["X-Request-ID"] == "probe-1"
    assert response.json()["error"]["request_id"] == "probe-1"


@pytest.mark.parametrize(
    ("payload", "step"),
    [
        # Each input is a valid float32, the arithmetic is not: 1e38 · 10 = 1e39.
        ({"latents": [[1e38] * 64], "vector": [1e38] * 64, "vector_strength": 10}, "vector · vector_strength"),
        ({"latents": [[3e38] * 64], "vector": [1e38] * 64, "vector_strength": 1}, "latent + offset"),
        ({"latents": [[-3e38] * 64], "vector": [1e38] * 64, "vector_strength": -1}, "latent + offset"),
    ],
)
def test_edit_arithmetic_that_overflows_float32_is_a_422_naming_the_step(client: TestClient, payload, step) -> None:
    response = client.post("/edit", json=payload, headers={"X-Request-ID": "probe-2"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"].startswith(f"{step} overflows the float32 range"), error
    assert error["limit"] == {"float32_max": float(np.finfo(np.float32).max)}
    assert response.headers["X-Request-ID"] == "probe-2" and error["request_id"] == "probe-2"


def test_the_float32_maximum_itself_is_accepted(client: TestClient) -> None:
    # 3.4028235e38 rounds to the float32 maximum, not to inf: the boundary is where the cast overflows.
    response = client.post("/edit", json={"latents": [[3.4028235e38] + [0.0] * 63], "vector": [0.0] * 64,
                                          "return_images": False})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["latent"][0] == float(np.finfo(np.float32).max)


def _tiff(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    return buffer.getvalue()


def _la_tiff(grey: int, alpha: int) -> bytes:
    """An LA TIFF with associated (premultiplied) alpha — ExtraSamples (tag 338) = 1 — that Pillow opens as 'La'.
    Pillow writes LA with ExtraSamples = 2 and cannot write 'La', so the one SHORT in that IFD entry is patched."""
    data = _tiff(Image.new("LA", (28, 28), (grey, alpha)))
    entry = (338).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    assert data[:2] == b"II" and data.count(entry + b"\x02\x00") == 1
    return data.replace(entry + b"\x02\x00", entry + b"\x01\x00")


def test_the_la_fixture_is_what_the_probe_sent() -> None:
    image = Image.open(io.BytesIO(_la_tiff(100, 128)))
    assert image.mode == "La" and image.tag_v2[338] == (1,)


def test_cielab_tiff_is_converted_through_rgb() -> None:
    data = _tiff(Image.new("LAB", (28, 28), (50, 0, 0)))
    assert Image.open(io.BytesIO(data)).mode == "LAB"
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").convert("L"))
    grey = decode_image(data, GRAY, "image 0", max_bytes=1 << 20, max_pixels=1_000_000)
    np.testing.assert_array_equal(grey[:, :, 0], expected)
    colour = decode_image(data, RGB, "image 0", max_bytes=1 << 20, max_pixels=1_000_000)
    assert colour.shape == (64, 64, 3)
    # Pillow's L*=128/255·100, a=b=0 (stored +128) is neutral grey: the conversion is colorimetric, not bytes.
    neutral = decode_image(_tiff(Image.new("LAB", (28, 28), (128, 128, 128))), GRAY, "image 0", max_bytes=1 << 20,
                           max_pixels=1_000_000)  # fmt: skip
    assert abs(int(neutral[0, 0, 0]) - 119) <= 2


@pytest.mark.parametrize("spec", [GRAY, RGB])
def test_premultiplied_la_is_composited_on_white_like_la(spec: ImageSpec) -> None:
    # Premultiplied grey 100 at alpha 128 is straight grey 199: on white, 199·128/255 + 255·127/255 ≈ 227 —
    # the same as the straight-alpha LA image of that colour.
    premultiplied = decode_image(_la_tiff(100, 128), spec, "image 0", max_bytes=1 << 20, max_pixels=1_000_000)
    straight = decode_image(_tiff(Image.new("LA", (28, 28), (199, 128))), spec, "image 0", max_bytes=1 << 20,
                            max_pixels=1_000_000)  # fmt: skip
    np.testing.assert_array_equal(premultiplied, straight)
    assert abs(int(premultiplied[0, 0, 0]) - 227) <= 1
    # Fully transparent premultiplied pixels are white, not black.
    clear = decode_image(_la_tiff(0, 0), spec, "image 0", max_bytes=1 << 20, max_pixels=1_000_000)
    assert (clear == 255).all()


@pytest.mark.parametrize(
    ("model", "data", "shape"),
    [
        ("fashion-mnist", _tiff(Image.new("LAB", (28, 28), (50, 0, 0))), (28, 28, 1)),
        ("emoji", _tiff(Image.new("LAB", (28, 28), (50, 0, 0))), (64, 64, 3)),
        ("fashion-mnist", _la_tiff(100, 128), (28, 28, 1)),
        ("emoji", _la_tiff(100, 128), (64, 64, 3)),
    ],
    ids=["lab-grey", "lab-rgb", "La-grey", "La-rgb"],
)
def test_invert_accepts_cielab_and_la_tiffs(client: TestClient, model: str, data: bytes, shape) -> None:
    response = client.post("/invert", json={"model": model, "images": [base64.b64encode(data).decode("ascii")]},
                           headers={"X-Request-ID": "probe-3"})  # fmt: skip
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert np.isfinite(result["latent"]).all() and decode_png(result["reconstruction_png"]).shape == shape


def test_a_mode_pillow_cannot_convert_is_a_415_naming_it(client: TestClient, monkeypatch) -> None:
    # Any conversion failure after a good decode is the client's to fix (re-encode), never a 500.
    import service.images as images

    def refuse(*_args, **_kwargs):
        raise ValueError("conversion from XYZ to L not supported")

    monkeypatch.setattr(images, "load_image", refuse)
    data = _tiff(Image.new("LAB", (28, 28), (50, 0, 0)))
    response = client.post("/invert", json={"images": [base64.b64encode(data).decode("ascii")]},
                           headers={"X-Request-ID": "probe-4"})  # fmt: skip
    assert response.status_code == 415, response.text
    assert "image mode LAB cannot be converted to L" in response.json()["error"]["message"]
    assert response.headers["X-Request-ID"] == "probe-4"
