"""service.chunks: the computation every worker and the offline twin share, on the shipped bundle and real
Fashion-MNIST test images (no Redis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.chunks import (
    JobSpec,
    NoUsableImages,
    chunk_images,
    compute_chunk,
    make_plan,
    merge_invert,
    merge_metrics,
    plan_chunks,
    run_chunk,
)
from service.metrics import ApiMetrics
from service.registry import load_model
from service.sources import Batch, SplitSource
from service.store import JobFolder, read_npz
from tests.service.conftest import MODELS, make_settings


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return load_model(MODELS / "fashion-mnist", make_settings(None), ApiMetrics())


def _run(model, spec: JobSpec, folder: Path, n: int, size: int) -> tuple[JobFolder, dict]:  # noqa: ANN001
    source = {"type": "split", "dataset": "fashion-mnist", "split": "test", "n": n}
    split = SplitSource("fashion-mnist", "test", n)
    plan = make_plan(spec, model, source, split.count, size)
    job = JobFolder(folder)
    job.root.mkdir(parents=True)
    job.write_json(job.plan, plan)
    for index, bounds in enumerate(plan["chunks"]):
        assert run_chunk(job, index, tuple(bounds), split, model, spec)
    return job, plan


def test_plans_cover_the_input_once_in_order() -> None:
    assert plan_chunks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert plan_chunks(0, 4) == []
    assert chunk_images(1000, 0) == 1000 and chunk_images(1000, 10) == 500 and chunk_images(1000, 10_000) == 16


def test_chunking_changes_no_metric_value(model, tmp_path: Path) -> None:
    # Batches restart at every chunk start, so chunks that are multiples of the batch size see the same batches
    # as one big chunk: the per-image values, and so mean and std, agree to rounding of the final sum (1e-9).
    spec = JobSpec("metrics", batch_size=50, metrics=("psnr", "ssim", "class_consistency", "latent_norm"))
    one, one_plan = _run(model, spec, tmp_path / "one", 400, 400)
    many, many_plan = _run(model, spec, tmp_path / "many", 400, 100)
    a = merge_metrics(one, one_plan, "x")["metrics"]
    b = merge_metrics(many, many_plan, "x")["metrics"]
    assert len(many_plan["chunks"]) == 4 and a.keys() == b.keys()
    for name in a:
        assert b[name]["n"] == a[name]["n"] == 400
        assert b[name]["mean"] == pytest.approx(a[name]["mean"], abs=1e-9), name
        assert b[name]["std"] == pytest.approx(a[name]["std"], abs=1e-9), name


def test_batch_size_changes_latents_only_within_onnx_runtime_rounding(model, fashion_test) -> None:
    batch = Batch([str(i) for i in range(60)], fashion_test.images[:60], fashion_test.labels[:60])
    big = compute_chunk(model, batch, JobSpec("invert", batch_size=60))["z"]
    small = compute_chunk(model, batch, JobSpec("invert", batch_size=7))["z"]
    # ONNX Runtime may pick other GEMM blockings for other batch sizes: float32 rounding, ~1e-6 on |z| ~ 1.
    np.testing.assert_allclose(small, big, atol=1e-5)


def test_invert_chunks_merge_into_latents_names_and_reconstructions(model, tmp_path: Path, fashion_test) -> None:
    spec = JobSpec("invert", batch_size=64, return_reconstructions=True)
    job, plan = _run(model, spec, tmp_path / "job", 250, 100)
    summary = merge_invert(job, plan)
    arrays = read_npz(job.result)
    assert list(arrays) == ["z", "names", "errors", "reconstructions"]
    assert arrays["z"].shape == (250, 64) and summary["z_shape"] == [250, 64] and summary["n"] == 250
    assert arrays["names"].tolist() == [str(i) for i in range(250)]
    # The latents are the bundle's DFI of exactly these images, in order.
    direct = compute_chunk(model, Batch(["x"] * 5, fashion_test.images[120:125], None), JobSpec("invert"))["z"]
    np.testing.assert_allclose(arrays["z"][120:125], direct, atol=1e-5)
    assert arrays["reconstructions"].dtype == np.uint8 and arrays["reconstructions"].shape == (250, 28, 28, 1)
    # A finished chunk is never redone.
    assert not run_chunk(job, 0, (0, 100), SplitSource("fashion-mnist", "test", 250), model, spec)


def test_a_plan_past_the_end_of_the_split_reads_nothing_there(model, tmp_path: Path) -> None:
    # The API plans n when the data set is not on its machine; chunks past the split's 10,000 images are empty.
    spec = JobSpec("invert", batch_size=250)
    source = {"type": "split", "dataset": "fashion-mnist", "split": "test", "n": 10_100}
    split = SplitSource("fashion-mnist", "test", 10_100)
    job = JobFolder(tmp_path / "job")
    plan = make_plan(spec, model, source, 10_100, 100)
    job.root.mkdir()
    assert run_chunk(job, 100, tuple(plan["chunks"][100]), split, model, spec)
    assert read_npz(job.chunk(100))["z"].shape == (0, 64)


def test_nothing_usable_is_an_error_naming_the_skipped_files(model, tmp_path: Path) -> None:
    job = JobFolder(tmp_path / "job")
    job.root.mkdir()
    empty = Batch([], np.zeros((0, 28, 28, 1), np.uint8), None, [("a.txt", "not an image"), ("b", "empty file")])
    spec = JobSpec("invert")
    job.write_chunk(0, compute_chunk(model, empty, spec))
    plan = {"chunks": [[0, 2]], "spec": spec.to_dict(), "model": model.name, "source": {"type": "archive"}}
    with pytest.raises(NoUsableImages, match=r"no usable image \(2 files skipped: a.txt: not an image"):
        merge_invert(job, plan)
    assert not job.result.exists()
