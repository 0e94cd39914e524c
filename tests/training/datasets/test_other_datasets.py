"""The 2-D Gaussians and the generic image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.datasets import DataSourceMissing, gaussians, load_dataset


def test_gaussians_have_eight_modes_two_of_them_minor() -> None:
    data = gaussians.load("train")
    counts = np.bincount(data.labels, minlength=8)
    minor, major = counts[list(gaussians.MINOR_MODES)], np.delete(counts, list(gaussians.MINOR_MODES))
    assert major.min() > 5 * minor.max()  # thinned by 8×; 5× leaves room for sampling noise at n = 50k
    centres = gaussians.mode_centres()[data.labels]
    assert abs(np.std(data.data - centres) - gaussians.STD) < 0.01
    np.testing.assert_array_equal(data.data, gaussians.load("train").data)  # fixed seed: same data everywhere


def _write(folder: Path, name: str, image: Image.Image) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)


def test_image_folder_converts_any_mode_to_model_shape(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent red → white on the white canvas
    _write(tmp_path / "cats", "a.png", rgba)
    _write(tmp_path / "cats", "b.png", Image.new("P", (20, 20), 3))
    _write(tmp_path / "dogs", "c.jpg", Image.new("CMYK", (64, 48), (0, 255, 0, 0)).convert("RGB"))
    _write(tmp_path / "dogs", "d.png", Image.fromarray(np.full((16, 16), 40_000, dtype=np.uint16)))
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG not really")
    data = load_dataset("folder", data_dir=str(tmp_path), size=28, channels=1)
    assert data.data.shape == (4, 28, 28, 1)  # the broken file is skipped, the rest converted
    assert data.class_names == ["cats", "dogs"] and data.labels.tolist() == [0, 0, 1, 1]
    assert (data.data[0] == 255).all()  # transparency composited on white
    assert 150 < int(data.data[3].mean()) < 160  # 16-bit 40000/65535 rescaled, not clipped to 255
    rgb = load_dataset("folder", data_dir=str(tmp_path), size=32, channels=3)
    assert rgb.data.shape == (4, 32, 32, 3)


def test_image_folder_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DataSourceMissing, match="does not exist"):
        load_dataset("folder", data_dir=str(tmp_path / "none"), size=28, channels=1)
    with pytest.raises(DataSourceMissing, match="holds no images"):
        load_dataset("folder", data_dir=str(tmp_path), size=28, channels=1)
    with pytest.raises(ValueError, match="needs --data-dir, --size and --channels"):
        load_dataset("folder", data_dir=str(tmp_path))
