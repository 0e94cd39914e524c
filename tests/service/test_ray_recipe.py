"""The Ray Data recipe (scripts/examples/ray_invert.py) against the offline twin on the same folder. Slow (Ray
starts a local cluster) and only where `ray[data]` is installed: `pip install "ray[data]"`, then
`python -m pytest -m slow tests/service/test_ray_recipe.py`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from service.batch import app
from tests.service.conftest import MODELS, ROOT

pytestmark = pytest.mark.slow


def test_ray_recipe_gives_the_offline_twins_latents(tmp_path: Path, fashion_test) -> None:
    ray = pytest.importorskip("ray")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(fashion_test.images[:300]):
        Image.fromarray(image[:, :, 0]).save(photos / f"{i:03d}.png")
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "offline"
    command = ["invert", "--model", str(MODELS / "fashion-mnist"), "--input", str(photos), "--out", str(out)]
    assert CliRunner().invoke(app, command, catch_exceptions=False).exit_code == 0

    spec = importlib.util.spec_from_file_location("ray_invert", ROOT / "scripts" / "examples" / "ray_invert.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    # Ray counts logical CPUs: two actors hold one each, and the file-reading tasks need their own.
    ray.init(num_cpus=4, include_dashboard=False, ignore_reinit_error=True)
    try:
        arrays = recipe.invert_folder(MODELS / "fashion-mnist", photos, actors=2, batch_size=64)
    finally:
        ray.shutdown()
    with np.load(out / "result.npz", allow_pickle=False) as offline:
        assert arrays["names"].tolist() == offline["names"].tolist()
        # Ray's blocks batch the images differently from the chunks: ONNX Runtime rounding only (float32, ~1e-6).
        np.testing.assert_allclose(arrays["z"], offline["z"], atol=1e-5)
        assert arrays["errors"].tolist() == offline["errors"].tolist()
