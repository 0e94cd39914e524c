"""Preprocessing shared by training and the service."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dfi_core.preprocessing import load_image, to_model_range, to_uint8


def test_round_trip_uint8_model_range_is_exact() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    model = to_model_range(images)
    assert model.shape == (5, 3, 8, 8) and model.dtype == np.float32
    assert model.min() >= -1 and model.max() <= 1
    np.testing.assert_array_equal(to_uint8(model), images)


def test_load_image_crops_to_centre_square_and_resizes() -> None:
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    image.paste((255, 255, 255), (20, 0, 40, 20))  # the centre square is white, the sides black
    out = load_image(image, 10, 3)
    assert out.shape == (10, 10, 3) and (out == 255).all()


def test_exif_rotation_is_applied() -> None:
    image = Image.new("L", (30, 10), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        assert decoded.size == (30, 10)
        from dfi_core.preprocessing import to_channels

        assert to_channels(decoded, 1).size == (10, 30)


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="expected"):
        to_model_range(np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        load_image(Image.new("RGB", (4, 4)), 4, 2)
