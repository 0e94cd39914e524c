"""`python -m service.batch`: the offline twin's shards, resume, merge and refusals (typer's CliRunner, in-process;
the byte-for-byte comparison with the job path is in test_jobs_fanout.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from service.batch import app
from tests.service.conftest import MODELS

BUNDLE = str(MODELS / "fashion-mnist")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, fashion_test) -> Path:
    """A folder a user would have: 45 PNGs in two sub-folders and one file that is not an image."""
    root = tmp_path_factory.mktemp("photos")
    for i, image in enumerate(fashion_test.images[:45]):
        folder = root / ("tops" if i % 2 else "shoes")
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(folder / f"{i:02d}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def invoke(*args: str):  # noqa: ANN201
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _invert(photos: Path, out: Path, *extra: str):  # noqa: ANN202
    return invoke("invert", "--model", BUNDLE, "--input", str(photos), "--out", str(out), "--chunk-size", "10", *extra)


def test_shards_resume_and_merge_into_the_one_process_result(photos: Path, tmp_path: Path) -> None:
    whole = _invert(photos, tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    summary = json.loads(whole.stdout.strip().splitlines()[-1])
    assert summary["n"] == 45 and summary["skipped"] == 1 and summary["z_shape"] == [45, 64]

    out = tmp_path / "sharded"
    first = _invert(photos, out, "--shard", "0/2")
    assert first.exit_code == 0 and '"merged": false' in first.stdout, first.output
    chunks = sorted(p.name for p in (out / "chunks").iterdir())
    assert chunks == ["00000.npz", "00002.npz", "00004.npz"]  # 46 inputs, 10 a chunk: 5 chunks, shard 0 has 3
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()}

    again = _invert(photos, out, "--shard", "0/2")  # a re-run (a restarted array task): resumes, computes nothing
    assert again.exit_code == 0 and "3 already written" in again.output, again.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("*.npz")} == stamps

    second = _invert(photos, out, "--shard", "1/2")  # the last shard to finish merges
    assert second.exit_code == 0, second.output
    assert (out / "result.npz").read_bytes() == (tmp_path / "whole" / "result.npz").read_bytes()

    merged = invoke("merge", "--out", str(out))  # merging again gives the same file
    assert merged.exit_code == 0 and json.loads(merged.stdout)["sha256"] == summary["sha256"]
    with np.load(out / "result.npz", allow_pickle=False) as result:
        names = result["names"].tolist()
        assert names == sorted(names) and names[0] == "shoes/00.png" and len(names) == 45
        assert result["errors"].tolist() == [["notes.txt", "not an image Pillow can decode safely"]]


def test_a_folder_of_another_plan_is_refused_and_missing_chunks_are_named(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _invert(photos, out, "--shard", "1/3").exit_code == 0
    other = invoke("invert", "--model", BUNDLE, "--input", str(photos), "--out", str(out), "--chunk-size", "7")
    assert other.exit_code == 2 and "another plan (differs in: chunks)" in other.output, other.output
    refined = _invert(photos, out, "--refine-steps", "3")
    assert refined.exit_code == 2 and "differs in: spec" in refined.output, refined.output
    missing = invoke("merge", "--out", str(out))
    assert missing.exit_code == 2 and "3 of 5 chunks missing (first: [0, 2, 3])" in missing.output, missing.output


def test_bad_arguments_are_named(photos: Path, tmp_path: Path) -> None:
    for shard in ("2/2", "x", "1/0"):
        result = _invert(photos, tmp_path / "o", "--shard", shard)
        assert result.exit_code == 2 and "--shard" in result.output, (shard, result.output)
    nowhere = _invert(tmp_path / "nope", tmp_path / "o2")
    assert nowhere.exit_code == 2 and "no such folder or file" in nowhere.output
    not_a_bundle = invoke("invert", "--model", str(tmp_path), "--input", str(photos), "--out", str(tmp_path / "o3"))
    assert not_a_bundle.exit_code == 2 and "no manifest.json" in not_a_bundle.output
    assert invoke("merge", "--out", str(tmp_path / "empty")).exit_code == 2
