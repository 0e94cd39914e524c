"""Images from the outside probe ("Hardening from an outside probe"): decompression bombs past Pillow's own limit
answered 415 instead of 413 naming `max_image_pixels` (item 1), files cut inside their header 415 instead of 422
"corrupt or truncated" (item 2), and multi-picture JPEGs (MPO, what phone cameras write) were refused (item 3)."""

from __future__ import annotations

import base64
import io
import random
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from dfi_core.bundle import ImageSpec
from service.errors import APIError
from service.images import decode_image
from tests.service.conftest import decode_png

GRAY = ImageSpec(channels=1, height=28, width=28)
RGB = ImageSpec(channels=3, height=64, width=64)
DEFAULT_PIXELS = 16_000_000  # DFI_MAX_IMAGE_PIXELS's default, which the `client` fixture's settings keep
FORMATS = ["PNG", "JPEG", "MPO", "GIF", "WEBP", "BMP", "TIFF", "PPM"]


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    if fmt == "MPO":  # a second picture, as a phone's MPO has: Pillow reads the file as MPO only with two or more
        kwargs = {"save_all": True, "append_images": [Image.new(image.mode, image.size, 255)], **kwargs}
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _decode(data: bytes, spec: ImageSpec = GRAY, max_pixels: int = DEFAULT_PIXELS) -> np.ndarray:
    return decode_image(data, spec, "image 0", max_bytes=8 << 20, max_pixels=max_pixels)


def _refused(data: bytes, max_pixels: int = DEFAULT_PIXELS) -> APIError:
    with pytest.raises(APIError) as error:
        _decode(data, max_pixels=max_pixels)
    return error.value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header(width: int, height: int) -> bytes:
    """Signature + IHDR (8-bit grey), written by hand: the 33 bytes before any IDAT."""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


def _png_declaring(width: int, height: int) -> bytes:
    """A whole 28×28 PNG (IDAT, IEND) whose IHDR is patched to declare width×height, its CRC recomputed."""
    small = _encoded(Image.new("L", (28, 28), 0), "PNG")
    assert small[:33] == _png_header(28, 28)
    return _png_header(width, height) + small[33:]


def _jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(_encoded(Image.new("L", (8, 8), 0), "JPEG"))
    assert data.count(b"\xff\xc0") == 1  # SOF0: length (2), precision (1), height (2), width (2)
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(_encoded(Image.new("L", (4, 4), 0), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen descriptor
    return bytes(data)


def _bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(_encoded(Image.new("L", (4, 4), 0), "BMP"))
    assert struct.unpack_from("<I", data, 14)[0] == 40  # BITMAPINFOHEADER: int32 width at 18, height at 22
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _tiff_declaring(width: int, height: int) -> bytes:
    data = _encoded(Image.new("L", (3, 5), 0), "TIFF")
    for tag, old, new in ((256, 3, width), (257, 5, height)):  # ImageWidth, ImageLength: one LONG each
        entry = struct.pack("<HHI", tag, 4, 1)
        assert data.count(entry + struct.pack("<I", old)) == 1
        data = data.replace(entry + struct.pack("<I", old), entry + struct.pack("<I", new))
    return data


def _ppm_declaring(width: int, height: int) -> bytes:
    return f"P5\n{width} {height}\n255\n".encode() + bytes(64)


def _webp_declaring(width: int, height: int) -> bytes:
    data = bytearray(_encoded(Image.new("RGB", (4, 4), 0), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F  # 14 bits width - 1, 14 bits height - 1, then 4 more bits
    bits = struct.unpack_from("<I", data, 21)[0] & ~0x0FFFFFFF
    struct.pack_into("<I", data, 21, bits | (width - 1) | (height - 1) << 14)
    return bytes(data)


@pytest.fixture
def allocations(monkeypatch) -> list:
    """Every pixel buffer Pillow allocates (`Image.core.new`, which `load` calls for the decoded image), recorded
    — a spy, the allocation itself still happens."""
    calls: list = []
    real = Image.core.new

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(Image.core, "new", spy)
    return calls


# Item 1: bombs ---------------------------------------------------------------------------------------------------


def test_the_spy_sees_a_decode(allocations: list) -> None:
    # Without this, "no allocation" below could be a spy that never fires.
    _decode(_png_declaring(28, 28))
    assert ("L", (28, 28)) in allocations


@pytest.mark.parametrize("header_only", [False, True], ids=["whole-file", "signature+IHDR"])
@pytest.mark.parametrize(
    ("width", "height"),
    [(5000, 5000), (10000, 10000), (20000, 20000), (100000, 100000)],
    # 25 M: over ours only; 100 M: over Pillow's warning (≈ 89.5 M); 400 M and 10 G: over its error (≈ 179 M)
)
def test_png_bombs_are_413_naming_the_declared_size_without_allocating(allocations, width, height, header_only):
    data = _png_header(width, height) if header_only else _png_declaring(width, height)
    assert len(data) < 200
    error = _refused(data)
    assert error.status == 413, error.message
    assert error.limit == {"max_image_pixels": DEFAULT_PIXELS}
    assert error.message == (f"image 0: header declares {width}×{height} = {width * height} pixels > "
                             f"max_image_pixels ({DEFAULT_PIXELS})")  # fmt: skip
    assert allocations == []


@pytest.mark.parametrize(
    ("fmt", "make", "size"),
    [
        ("JPEG", _jpeg_declaring, (20000, 20000)),
        ("GIF", _gif_declaring, (20000, 20000)),
        ("BMP", _bmp_declaring, (20000, 20000)),
        ("TIFF", _tiff_declaring, (20000, 20000)),
        ("PPM", _ppm_declaring, (20000, 20000)),
        # libwebp allocates the canvas when Pillow's parser creates its decoder: checked from the bytes before.
        ("WEBP", _webp_declaring, (16384, 16384)),  # the largest a VP8L header can declare: 268 M pixels
    ],
)
def test_bombs_past_pillows_limit_are_413_in_every_format(allocations, fmt, make, size) -> None:
    data = make(*size)
    with pytest.raises(Image.DecompressionBombError):  # the fixture is a bomb to Pillow, not just to us
        Image.open(io.BytesIO(data))
    error = _refused(data)
    assert error.status == 413 and error.limit == {"max_image_pixels": DEFAULT_PIXELS}, error.message
    assert f"{size[0]}×{size[1]} = {size[0] * size[1]} pixels" in error.message
    assert allocations == []


@pytest.mark.parametrize("size", [(5000, 5000), (16384, 16384)])  # 25 M: no bomb to Pillow, a 100 MB canvas
def test_a_webp_bomb_is_refused_before_libwebp_allocates_its_canvas(monkeypatch, size) -> None:
    # Pillow's WebP parser hands the file to libwebp's WebPAnimDecoder, which allocates the canvas at once (not
    # through Image.core.new): a spy on it shows it is never reached for a bomb, and is for a good file.
    from PIL import WebPImagePlugin

    created: list = []
    real = WebPImagePlugin._webp.WebPAnimDecoder

    def spy(data):
        created.append(len(data))
        return real(data)

    monkeypatch.setattr(WebPImagePlugin._webp, "WebPAnimDecoder", spy)
    _decode(_encoded(Image.new("RGB", (28, 28), 0), "WEBP", lossless=True))
    assert len(created) == 1
    error = _refused(_webp_declaring(*size))
    assert error.status == 413 and f"{size[0]}×{size[1]}" in error.message, error.message
    assert len(created) == 1


@pytest.mark.parametrize(("side", "needle"), [(5000, "header declares 5000×5000"), (20000, "Image size (400000000")])
def test_a_gif_frame_past_its_screen_is_a_bomb_too(allocations, side: int, needle: str) -> None:
    # A 4×4 screen whose first frame descriptor says side×side: Pillow grows the canvas to fit (past its own error
    # limit it raises DecompressionBombError in the parser, whose message names the count): 413 either way.
    data = _encoded(Image.new("L", (4, 4), 0), "GIF")
    descriptor = b"\x2c" + struct.pack("<HHHH", 0, 0, 4, 4)  # image separator, left, top, width, height
    assert data.count(descriptor) == 1
    error = _refused(data.replace(descriptor, b"\x2c" + struct.pack("<HHHH", 0, 0, side, side)))
    assert error.status == 413 and error.limit == {"max_image_pixels": DEFAULT_PIXELS}, error.message
    assert needle in error.message and allocations == []


def test_a_setting_above_pillows_limit_is_capped_at_it() -> None:
    # DFI_MAX_IMAGE_PIXELS may be raised, but never past what Pillow itself calls a bomb (its warning threshold).
    assert Image.MAX_IMAGE_PIXELS is not None
    error = _refused(_png_header(20000, 20000), max_pixels=10**12)
    assert error.status == 413 and error.limit == {"max_image_pixels": Image.MAX_IMAGE_PIXELS}, error.message


def test_pillows_globals_are_untouched_under_threads() -> None:
    # decode_image runs in threads: bombs, truncated files and good images at once, 8 threads. Pillow's limit and
    # the warnings filters (warnings.catch_warnings swaps them process-wide) must be as they were, and Pillow must
    # still refuse a bomb for any other caller.
    limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    good = _encoded(Image.new("L", (28, 28), 7), "PNG")
    inputs = [(_png_header(20000, 20000), 413), (good[:40], 422), (good, 200), (_jpeg_declaring(30000, 30000), 413)]

    def status(data: bytes) -> int:
        try:
            _decode(data)
            return 200
        except APIError as error:
            return error.status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(status, [data for data, _ in inputs] * 50))
    assert statuses == [expected for _, expected in inputs] * 50
    assert limit == Image.MAX_IMAGE_PIXELS and warnings.filters == filters
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(_png_declaring(20000, 20000)))


# Item 2: truncated files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [_encoded(Image.new("L", (28, 28), 0), "PNG")[:33], _png_header(28, 28), _png_header(28, 28) + b"\0\0\0"],
    ids=["first-33-bytes", "signature+IHDR", "cut-in-the-next-chunk"],
)
def test_a_png_cut_after_its_header_is_422(data: bytes) -> None:
    error = _refused(data)
    assert error.status == 422, error.message
    assert error.message.startswith("image 0: corrupt or truncated PNG image"), error.message


def _second_picture(mpo: bytes) -> int:
    """Where an MPO's second picture starts: its MP index entry's offset, relative to the MP header (the TIFF
    header after "MPF\\0" in the first picture's APP2 segment)."""
    return mpo.index(b"MPF\x00") + 4 + Image.open(io.BytesIO(mpo)).mpinfo[0xB002][1]["DataOffset"]


def _photo(fmt: str) -> bytes:
    # Noise, so that every format writes enough data after its header to cut it in the middle.
    return _encoded(Image.effect_noise((40, 30), 60).convert("RGB"), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cut", ["12", "16", "33", "half", "end-10"])
def test_truncated_files_of_every_format_are_422(fmt: str, cut: str) -> None:
    data = _photo(fmt)
    if fmt == "MPO":
        data = data[: _second_picture(data)]  # the first picture only: the cuts fall inside it
    if fmt == "PNG" and cut == "end-10":
        cut = "half"  # the last 12 bytes of a PNG are the IEND chunk, which decoding does not need
    length = {"half": len(data) // 2, "end-10": len(data) - 10}.get(cut) or int(cut)
    error = _refused(data[:length])
    assert error.status == 422, error.message
    # An MPO cut before Pillow has read its whole JPEG header reads as the JPEG it starts as; it is MPO once opened.
    names = ("JPEG", "MPO") if fmt == "MPO" else (fmt,)
    assert any(f"image 0: corrupt or truncated {name} image (" in error.message for name in names), error.message
    if fmt == "MPO" and cut == "end-10":
        assert "truncated MPO image" in error.message


def test_an_mpo_cut_inside_its_second_picture_still_gives_the_first() -> None:
    data = _photo("MPO")
    assert data[_second_picture(data) : _second_picture(data) + 2] == b"\xff\xd8"  # a JPEG starts there
    assert _decode(data[: len(data) - 10]).shape == (28, 28, 1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mangled_files_are_a_4xx_and_a_known_signature_is_never_not_an_image(fmt: str) -> None:
    # Seeded random byte changes: every answer is an image or a 4xx (never another exception, i.e. a 500); while
    # the signature (the first 16 bytes) is intact the format is recognised, so never "not an image".
    original = _photo(fmt)
    rng = random.Random(fmt)
    for _ in range(40):
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            _decode(bytes(data))
        except APIError as error:
            assert 400 <= error.status < 500
            if data[:16] == original[:16]:
                assert "not an image" not in error.message, error.message


# Item 3: MPO -----------------------------------------------------------------------------------------------------


def _gradient() -> Image.Image:
    return Image.linear_gradient("L").resize((40, 30)).convert("RGB")


@pytest.mark.parametrize("spec", [GRAY, RGB])
def test_an_mpo_gives_its_first_picture(spec: ImageSpec) -> None:
    first = _gradient()
    second = ImageOps.invert(first)
    buffer = io.BytesIO()
    first.save(buffer, format="MPO", save_all=True, append_images=[second], quality=90)
    mpo = buffer.getvalue()
    opened = Image.open(io.BytesIO(mpo))
    assert opened.format == "MPO" and opened.n_frames == 2
    result = _decode(mpo, spec)
    # The first picture of an MPO is a JPEG written by the same encoder at the same quality: decoded, it is the
    # plain JPEG of that frame, pixel for pixel (the MP index is an extra APP2 segment; the scan is the same).
    np.testing.assert_array_equal(result, _decode(_encoded(first, "JPEG", quality=90), spec))
    # And close to the frame itself: JPEG is lossy (quantised DCT, YCbCr rounding), a smooth gradient at quality
    # 90 loses about a grey level on average; the second picture (its negative) is ~128 levels away.
    expected = _decode(_encoded(first, "PNG"), spec).astype(int)
    assert np.abs(result.astype(int) - expected).mean() < 2
    assert np.abs(result.astype(int) - _decode(_encoded(second, "PNG"), spec).astype(int)).mean() > 100


def test_an_mpos_exif_orientation_is_applied_like_a_jpegs() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise, as a phone held upright writes
    image = Image.new("L", (56, 28), 255)
    image.paste(0, (0, 0, 28, 28))
    rotated = _decode(_encoded(image, "MPO", exif=exif.tobytes(), quality=95))
    assert np.array_equal(rotated, _decode(_encoded(image, "JPEG", exif=exif.tobytes(), quality=95)))
    assert not np.array_equal(rotated, _decode(_encoded(image, "JPEG", quality=95)))


# Over HTTP -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "needle"),
    [
        (_png_header(20000, 20000), 413, "image 0: header declares 20000×20000 = 400000000 pixels > max_image_pixels"),
        (_png_declaring(100000, 100000), 413, "image 0: header declares 100000×100000"),
        (_webp_declaring(16384, 16384), 413, "image 0: header declares 16384×16384"),
        (_png_header(28, 28), 422, "image 0: corrupt or truncated PNG image"),
        (_photo("TIFF")[:100], 422, "image 0: corrupt or truncated TIFF image"),
        (_photo("GIF")[:33], 422, "image 0: corrupt or truncated GIF image"),
    ],
    ids=["png-bomb-header", "png-bomb-whole", "webp-bomb", "png-ihdr-only", "tiff-cut", "gif-cut"],
)
def test_invert_answers_bombs_and_truncated_files_with_the_4xx(client: TestClient, data, status, needle) -> None:
    response = client.post("/invert", json={"images": [_b64(data)]}, headers={"X-Request-ID": "probe-img"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"].startswith(needle), error
    assert error["request_id"] == "probe-img"
    if status == 413:
        assert error["limit"] == {"max_image_pixels": DEFAULT_PIXELS}
    multipart = client.post("/invert", files=[("images", ("x.img", data, "application/octet-stream"))])
    assert multipart.status_code == status and multipart.json()["error"]["message"].startswith(needle)


@pytest.mark.parametrize(("model", "shape"), [("fashion-mnist", (28, 28, 1)), ("emoji", (64, 64, 3))])
def test_invert_accepts_an_mpo(client: TestClient, model: str, shape) -> None:
    mpo = _encoded(_gradient(), "MPO", quality=90)
    response = client.post("/invert", json={"model": model, "images": [_b64(mpo)]})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert np.isfinite(result["latent"]).all() and decode_png(result["reconstruction_png"]).shape == shape
    plain = client.post("/invert", json={"model": model, "images": [_b64(_encoded(_gradient(), "JPEG", quality=90))]})
    assert plain.json()["results"][0]["latent"] == result["latent"]  # the same pixels in, the same latent out
