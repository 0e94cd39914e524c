"""Decoding user images: every Pillow mode lands in the bundle's channels the same way; hostile input is a 4xx."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dfi_core.bundle import ImageSpec
from service.errors import APIError
from service.images import decode_base64, decode_image, png_base64

GRAY = ImageSpec(channels=1, height=28, width=28)
RGB = ImageSpec(channels=3, height=64, width=64)
LIMITS = {"max_bytes": 1 << 20, "max_pixels": 1_000_000}


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def decode(data: bytes, spec: ImageSpec = GRAY) -> np.ndarray:
    return decode_image(data, spec, "image 0", **LIMITS)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "1"])
@pytest.mark.parametrize("spec", [GRAY, RGB])
def test_every_mode_decodes_to_the_bundle_shape(mode: str, spec: ImageSpec) -> None:
    image = Image.new("RGB", (40, 30), (200, 30, 90)).convert(mode)
    fmt = "TIFF" if mode in ("I;16", "I", "F", "CMYK") else "PNG"
    array = decode(encoded(image, fmt), spec)
    assert array.shape == (spec.height, spec.width, spec.channels) and array.dtype == np.uint8


def test_transparent_pixels_become_white_not_black() -> None:
    array = decode(encoded(Image.new("RGBA", (28, 28), (0, 0, 0, 0))))
    assert array.min() == 255


def test_exif_orientation_is_applied() -> None:
    # A 56×28 image, left half black, right half white, tagged "rotate 90° CW" (orientation 6): after transposing
    # it is 28×56 with black on top, so the centre crop keeps... the middle: check the top row is darker.
    image = Image.new("L", (56, 28), 255)
    image.paste(0, (0, 0, 28, 28))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = decode(encoded(image, "JPEG", exif=exif.tobytes(), quality=95))
    plain = decode(encoded(image, "JPEG", quality=95))
    assert not np.array_equal(upright, plain)
    assert upright[0].mean() < upright[-1].mean()  # black ends on top after the 90° rotation


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("L", (28, 28), 0), Image.new("L", (28, 28), 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert decode(buffer.getvalue()).max() == 0


def test_truncated_png_is_422() -> None:
    data = encoded(Image.effect_noise((28, 28), 50).convert("L"))
    with pytest.raises(APIError) as error:
        decode(data[: len(data) // 2])
    assert error.value.status == 422 and "truncated" in error.value.message


def test_not_an_image_is_415() -> None:
    with pytest.raises(APIError) as error:
        decode(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    assert error.value.status == 415


def test_eps_is_refused_before_decoding() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n"
    with pytest.raises(APIError) as error:
        decode(eps)
    assert error.value.status == 415


def test_decompression_bomb_is_413_from_the_header() -> None:
    # 2000×2000 = 4 M pixels of one colour: a few KB compressed, refused before the pixels are decoded.
    data = encoded(Image.new("L", (2000, 2000), 0))
    assert len(data) < 50_000
    with pytest.raises(APIError) as error:
        decode(data)
    assert error.value.status == 413 and error.value.limit == {"max_image_pixels": LIMITS["max_pixels"]}


def test_oversized_file_is_413() -> None:
    with pytest.raises(APIError) as error:
        decode_image(b"x" * 2048, GRAY, "image 0", max_bytes=1024, max_pixels=10)
    assert error.value.status == 413 and error.value.limit == {"max_image_bytes": 1024}


def test_bad_base64_is_422() -> None:
    with pytest.raises(APIError) as error:
        decode_base64("not base64!!", "image 0", 1024)
    assert error.value.status == 422


def test_png_round_trip_is_exact_for_8_bit_values() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    image = pixels.astype(np.float32) / 127.5 - 1
    import base64

    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64(image)))))
    assert np.array_equal(back, pixels[0])
