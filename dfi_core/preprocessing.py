"""Image preprocessing shared by training and the service.

Every image a model sees goes through `load_image` + `to_model_range`, so training data from an image folder
and images posted to the service are converted the same way.

Conventions (written once, used everywhere):
    uint8 images      [N, H, W, C] uint8, [0, 255]
    model tensors     [N, C, H, W] float32, [-1, +1]
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

VALUE_RANGE = (-1.0, 1.0)


def to_channels(image: Image.Image, channels: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 'L' (channels=1) or 'RGB' (channels=3).

    Transparency is composited on `background` (white, as the emoji data set) instead of being dropped,
    because dropping alpha turns transparent pixels into arbitrary colours.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = ImageOps.exif_transpose(image) if hasattr(image, "getexif") else image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: rescale to 8 bit rather than clipping (Pillow's convert('L') clips at 255).
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("La", "RGBa"):
        # Associated (premultiplied) alpha, e.g. a TIFF with ExtraSamples = 1: Pillow converts these only to
        # their straight-alpha modes; then they are composited like any other transparency below.
        image = image.convert("LA" if image.mode == "La" else "RGBA")
    if image.mode in ("LAB", "HSV"):
        # CIELab TIFFs (and HSV): Pillow converts these to RGB only, not straight to L.
        image = image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        image = Image.alpha_composite(canvas, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to size×size (area-preserving Lanczos when shrinking)."""
    width, height = image.size
    if width != height:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def load_image(source: str | Path | BinaryIO | Image.Image, size: int, channels: int) -> np.ndarray:
    """Read one image of any mode/size Pillow decodes → [H, W, C] uint8 at the model's size and channels.

    Animated images give their first frame (Pillow opens at frame 0).
    """
    image = source if isinstance(source, Image.Image) else Image.open(source)
    image.load()
    image = fit_square(to_channels(image, channels), size)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def to_model_range(images: np.ndarray) -> np.ndarray:
    """[N, H, W, C] uint8 [0, 255] → [N, C, H, W] float32 [-1, +1]."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected [N, H, W, C] uint8, got {images.dtype} with shape {images.shape}")
    return (images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[N, C, H, W] float [-1, +1] → [N, H, W, C] uint8 [0, 255] (values outside the range are clipped)."""
    if images.ndim != 4:
        raise ValueError(f"expected [N, C, H, W], got shape {images.shape}")
    scaled = np.clip((images.astype(np.float32) + 1.0) * 127.5 + 0.5, 0, 255)
    return scaled.astype(np.uint8).transpose(0, 2, 3, 1)
