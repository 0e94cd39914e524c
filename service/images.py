"""Decode user images safely and turn them into a bundle's model input; encode outputs as PNG.

The limits are checked in this order, each before any work the next one needs:

1. encoded size (413 `max_image_bytes`);
2. format, from the file's signature (the first 16 bytes, Pillow's own `accept` checks) against an allow-list —
   PNG, JPEG, MPO, GIF, WEBP, BMP, TIFF, PPM. Only these plugins' parsers ever run (no SVG/EPS/PDF: Ghostscript is
   never reached); anything else is 415, naming the format when another Pillow plugin recognises the signature;
3. pixel count as the header declares it, before any pixel is allocated (decompression bombs): 413 naming
   `max_image_pixels` and the declared width×height. WebP is checked from its first 30 bytes *before* its
   parser runs, because libwebp allocates the whole canvas when the parser creates its decoder. A header cut
   (or broken) after the size is still a bomb, not a truncated file: when Pillow's parser fails, the size is read
   from the bytes (`_declared_size`: PNG's IHDR, GIF's screen, BMP's info header, JPEG's SOF, WebP's first chunk;
   TIFF and PPM keep it further in, so a TIFF or PPM cut inside its header is a 422);
4. the full decode: 422 "corrupt or truncated <FORMAT> image (<Pillow's reason>)" naming the image — also for a
   file whose signature is recognised but whose header is cut or broken (e.g. a PNG of signature + IHDR and no
   IDAT): a format we recognise is never a 415. Any exception from Pillow's parser or decoder on these bytes is
   the file's (422), except MemoryError.

Why not `Image.open`: it tries every registered plugin and then applies Pillow's *own* pixel limit
(`Image.MAX_IMAGE_PIXELS`, ≈ 89.5 M: a warning above it, `DecompressionBombError` above twice it), which fires
before ours could and without the width and height; and a parser failure in a recognised format reads as
"cannot identify image file". `_open_header` does what `Image.open` does (the same `Image.OPEN` registry of
factory + accept, fed a fresh stream) for the allowed formats only, then `decode_image` applies the service's
check. Pillow's global state is left alone — no `MAX_IMAGE_PIXELS` changes and no `warnings.catch_warnings`
(neither is thread-safe, and decoding runs in threads) — so every other caller keeps Pillow's protection, and
the checks Pillow makes inside plugins (GIF frames growing the canvas, TIFF tiles, MPO frames, the WebP canvas)
still apply here: their `DecompressionBombError` is a 413 as well. The service's limit is capped at Pillow's
`MAX_IMAGE_PIXELS`, so a larger `DFI_MAX_IMAGE_PIXELS` never lets through what Pillow would refuse.

Multi-frame images give their first frame: animated GIF/PNG/WebP, multi-page TIFF, and MPO — the multi-picture
JPEG phone cameras write (a JPEG followed by more JPEGs; Pillow's JPEG factory returns an `MpoImageFile` for it).
Only the first frame is decoded, so an MPO cut inside a later picture still gives its first; one cut inside its
first picture's header is answered as the JPEG it starts as.

The conversion itself is the shared `dfi_core.preprocessing` — the same code the training package used — so the
service sees what training saw.
"""

from __future__ import annotations

import base64
import binascii
import io
import zlib

import numpy as np
from PIL import Image, ImageFile, ImageOps, WebPImagePlugin

from dfi_core.bundle import ImageSpec
from dfi_core.preprocessing import load_image, to_model_range, to_uint8
from service.errors import APIError

ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "WEBP", "BMP", "TIFF", "PPM")
# The Image.OPEN entries tried, in this order; JPEG's factory returns an MpoImageFile for a multi-picture JPEG.
_OPENERS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "PPM")
NOT_AN_IMAGE = "not an image Pillow can decode safely"

# Every plugin registers its factory + signature check in Image.OPEN, now rather than lazily in a request's thread
# (Image.open would): `_open_header` runs the allowed ones; the others only name a format that is refused.
Image.init()


def decode_base64(text: str, what: str, max_bytes: int) -> bytes:
    # base64 is 4/3 the size of the bytes: refuse before decoding anything that cannot fit.
    if len(text) > max_bytes * 4 // 3 + 4:
        raise APIError(413, f"{what}: larger than max_image_bytes", limit={"max_image_bytes": max_bytes})
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(422, f"{what}: not valid base64") from None


def pixel_limit(max_pixels: int) -> int:
    """The limit enforced: the setting, capped at Pillow's own (read now: an application may change it)."""
    pillow = Image.MAX_IMAGE_PIXELS
    return max_pixels if pillow is None else min(max_pixels, int(pillow))


def _refuse_too_many(what: str, width: int, height: int, limit: int) -> None:
    pixels = width * height
    if pixels > limit:
        raise APIError(413, f"{what}: header declares {width}×{height} = {pixels} pixels > max_image_pixels ({limit})",
                       limit={"max_image_pixels": limit})  # fmt: skip


def _be(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "big")


def _le(data: bytes, start: int, size: int, signed: bool = False) -> int:
    return int.from_bytes(data[start : start + size], "little", signed=signed)


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's first SOF segment (walking the marker segments by their lengths), or None."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: precision, height, width
            return (_be(data, at + 7, 2), _be(data, at + 5, 2)) if at + 9 <= len(data) else None
        else:
            at += 2 + _be(data, at + 2, 2)
    return None


def _declared_size(name: str, data: bytes) -> tuple[int, int] | None:
    """The width and height the header of a `name` file declares, read from the bytes without Pillow, or None.

    Used before Pillow's parser for WebP (libwebp allocates the canvas as the parser creates its decoder), and
    when a parser fails (a cut or broken header) to tell a bomb (413) from a truncated file (422). TIFF and PPM
    keep their size further in (an IFD anywhere in the file; text): there Pillow's parser is the only reader.
    """
    if name == "PNG" and len(data) >= 33 and data[12:16] == b"IHDR" and _be(data, 29, 4) == zlib.crc32(data[12:29]):
        return _be(data, 16, 4), _be(data, 20, 4)  # IHDR is the first chunk; its CRC says it is intact
    if name == "GIF" and len(data) >= 10:  # the logical screen (Pillow grows it to fit the first frame)
        return _le(data, 6, 2), _le(data, 8, 2)
    if name == "BMP" and len(data) >= 26:
        if _le(data, 14, 4) == 12:  # BITMAPCOREHEADER: 16-bit sizes
            return _le(data, 18, 2), _le(data, 20, 2)
        return abs(_le(data, 18, 4, signed=True)), abs(_le(data, 22, 4, signed=True))  # negative height: top-down
    if name == "JPEG":
        return _jpeg_frame_size(data)
    if name == "WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":  # lossy: 14 bits after the key
            return _le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF
        if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:  # lossless: 14 bits each, minus one
            bits = _le(data, 21, 4)
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X" and len(data) >= 30:  # extended (animation, alpha): 24 bits each, minus one
            return _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
    return None


PNG_SIGNATURE, JPEG_SIGNATURE = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


def declared_pixels(data: bytes) -> int | None:
    """Width × height a PNG's IHDR or a JPEG's first SOF declares (the size Pillow decodes), read from the bytes
    without any parser; None for every other format or a header that does not say. Only decides whether a request
    is small enough to decode in the graph's thread (service.inference.small_images): `decode_image` still checks
    everything."""
    name = "PNG" if data.startswith(PNG_SIGNATURE) else "JPEG" if data.startswith(JPEG_SIGNATURE) else None
    size = _declared_size(name, data) if name else None
    return None if size is None else size[0] * size[1]


def _accepts(accept, prefix: bytes) -> bool:
    """A Pillow plugin's signature check; True only for a plain yes (a str is "recognised, support missing")."""
    try:
        return accept is not None and accept(prefix) is True
    except Exception:  # noqa: BLE001 — some (DIB) unpack a too-short prefix; Image.open ignores that too
        return False


def _recognised(data: bytes) -> str | None:
    """The allowed format whose signature `data` starts with (the signatures do not overlap), else None."""
    prefix = data[:16]
    for name in _OPENERS:
        if _accepts(Image.OPEN[name][1], prefix):
            return name
    if prefix.startswith(b"RIFF") and prefix[8:12] == b"WEBP" and WebPImagePlugin.SUPPORTED:
        return "WEBP"  # a WebP cut inside its first chunk header: Pillow's accept also wants the chunk id
    return None


def _refuse_unrecognised(data: bytes, what: str) -> APIError:
    prefix = data[:16]
    for name, (_, accept) in list(Image.OPEN.items()):  # accept only compares the signature bytes
        if name not in ALLOWED_FORMATS and _accepts(accept, prefix):
            return APIError(415, f"{what}: format {name} is not accepted; use one of {ALLOWED_FORMATS}")
    return APIError(415, f"{what}: {NOT_AN_IMAGE}")


def _open_header(data: bytes, what: str, limit: int) -> ImageFile.ImageFile:
    """Identify `data` as an allowed format and parse its header (no pixel data) — Image.open for those formats."""
    name = _recognised(data)
    if name is None:
        raise _refuse_unrecognised(data, what)
    if name == "WEBP" and (size := _declared_size(name, data)) is not None:
        _refuse_too_many(what, *size, limit)
    factory = Image.OPEN[name][0]
    try:
        return factory(io.BytesIO(data), "")
    except Image.DecompressionBombError as error:
        raise APIError(413, f"{what}: more pixels than max_image_pixels ({limit}): {error}",
                       limit={"max_image_pixels": limit}) from None  # fmt: skip
    except MemoryError:
        raise  # the server's, not the file's
    except Exception as error:  # noqa: BLE001 — Pillow's parser on untrusted bytes: any other failure is the file's
        if (size := _declared_size(name, data)) is not None:
            _refuse_too_many(what, *size, limit)  # a bomb whose header is cut after its size is still a bomb
        raise APIError(422, f"{what}: corrupt or truncated {name} image ({error})") from None


def decode_image(data: bytes, spec: ImageSpec, what: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """One encoded image → [H, W, C] uint8 in the bundle's size and channels, or an APIError (4xx)."""
    if not data:
        raise APIError(422, f"{what}: empty file")
    if len(data) > max_bytes:
        raise APIError(413, f"{what}: {len(data)} bytes > max_image_bytes", limit={"max_image_bytes": max_bytes})
    limit = pixel_limit(max_pixels)
    image = _open_header(data, what, limit)
    _refuse_too_many(what, image.width, image.height, limit)
    if image.width <= 0 or image.height <= 0:
        raise APIError(422, f"{what}: corrupt image: its header declares {image.width}×{image.height} pixels")
    try:
        image.seek(0)  # multi-frame → first frame
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy of the decoded image (48 MB at 4000×4000 RGB)
    except Image.DecompressionBombError as error:  # a check inside a plugin (e.g. a GIF frame past the canvas)
        raise APIError(413, f"{what}: more pixels than max_image_pixels ({limit}): {error}",
                       limit={"max_image_pixels": limit}) from None  # fmt: skip
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 — as in _open_header: decoding untrusted bytes
        raise APIError(422, f"{what}: corrupt or truncated {image.format} image ({error})") from None
    try:
        return load_image(image, spec.height, spec.channels)
    except (ValueError, OSError) as error:
        # A mode Pillow decodes but cannot convert to the bundle's channels (the common ones are converted in
        # dfi_core.preprocessing.to_channels): the client can re-encode it, so 415 naming the mode, never a 500.
        target = "L" if spec.channels == 1 else "RGB"
        raise APIError(415, f"{what}: image mode {image.mode} cannot be converted to {target} ({error})") from None


def to_model_input(images: list[np.ndarray]) -> np.ndarray:
    """[N, C, H, W] float32 [-1, +1] from a list of [H, W, C] uint8."""
    return to_model_range(np.stack(images))


def png_base64(image: np.ndarray) -> str:
    """[C, H, W] float32 [-1, +1] → base64 PNG."""
    pixels = to_uint8(image[None])[0]
    mode_image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    mode_image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
