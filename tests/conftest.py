"""Shared fixtures. Tests run single-threaded torch: CI has two cores and parallel BLAS threads only add noise."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fashion_train():
    from training.datasets import load_dataset

    return load_dataset("fashion-mnist", "train")
