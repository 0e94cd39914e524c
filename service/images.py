"""Decode user images safely and turn them into a bundle's model input; encode outputs as PNG.

The limits are checked in this order: encoded size, format (Pillow's header sniffing, then an allow-list — no
SVG/EPS/PDF, which Pillow would hand to Ghostscript), pixel count from the header before decoding (decompression
bombs), then the full decode (truncated or corrupt files fail here). The conversion itself is the shared
`dfi_core.preprocessing` — the same code the training package used — so the service sees what training saw.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dfi_core.bundle import ImageSpec
from dfi_core.preprocessing import load_image, to_model_range, to_uint8
from service.errors import APIError

ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "PPM")


def decode_base64(text: str, what: str, max_bytes: int) -> bytes:
    # base64 is 4/3 the size of the bytes: refuse before decoding anything that cannot fit.
    if len(text) > max_bytes * 4 // 3 + 4:
        raise APIError(413, f"{what}: larger than max_image_bytes", limit={"max_image_bytes": max_bytes})
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(422, f"{what}: not valid base64") from None


def decode_image(data: bytes, spec: ImageSpec, what: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """One encoded image → [H, W, C] uint8 in the bundle's size and channels, or an APIError (4xx)."""
    if not data:
        raise APIError(422, f"{what}: empty file")
    if len(data) > max_bytes:
        raise APIError(413, f"{what}: {len(data)} bytes > max_image_bytes", limit={"max_image_bytes": max_bytes})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise APIError(415, f"{what}: format {image.format} is not accepted; use one of {ALLOWED_FORMATS}")
            pixels = image.width * image.height
            if pixels > max_pixels:
                raise APIError(413, f"{what}: {image.width}×{image.height} = {pixels} pixels > max_image_pixels",
                               limit={"max_image_pixels": max_pixels})  # fmt: skip
            image.seek(0)  # animated → first frame
            image.load()
            image = ImageOps.exif_transpose(image)
    except APIError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise APIError(415, f"{what}: not an image Pillow can decode safely") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise APIError(422, f"{what}: corrupt or truncated image ({error})") from None
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
