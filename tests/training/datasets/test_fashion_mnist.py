"""Fashion-MNIST loader on the real IDX files (Debian's dataset-fashion-mnist; CI installs it)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from training.datasets import DataSourceMissing, fashion_mnist, load_dataset


def test_train_split_shapes_ranges_and_balanced_labels(fashion_train) -> None:
    data = fashion_train
    assert data.data.shape == (60_000, 28, 28, 1) and data.data.dtype == np.uint8
    assert data.data.min() == 0 and data.data.max() == 255
    assert np.bincount(data.labels).tolist() == [6_000] * 10  # the release is exactly balanced
    assert data.class_names[9] == "ankle boot"
    batch = data.batch(np.arange(32))
    assert batch.shape == (32, 1, 28, 28) and batch.dtype.__str__() == "torch.float32"
    assert batch.min() >= -1 and batch.max() <= 1 and batch.min() == -1


def test_test_split_has_ten_thousand_balanced_images() -> None:
    data = load_dataset("fashion-mnist", "test")
    assert len(data) == 10_000
    assert np.bincount(data.labels).tolist() == [1_000] * 10


def test_missing_folder_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(DataSourceMissing, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.load("train", tmp_path / "nowhere")


def test_env_var_selects_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataSourceMissing, match=str(tmp_path)):
        load_dataset("fashion-mnist", "test")


def test_corrupt_idx_file_is_rejected_with_its_name(tmp_path: Path) -> None:
    for name in fashion_mnist.FILES["test"]:
        with gzip.open(tmp_path / name, "wb") as handle:
            handle.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + b"\x00" * 12)  # header lies about size
    with pytest.raises(ValueError, match="t10k-images"):
        fashion_mnist.load("test", tmp_path)


def test_unknown_split_and_data_set_are_named() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        fashion_mnist.load("validation")
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        load_dataset("mnist")
