"""Shared fixtures. Tests run single-threaded torch: CI has two cores and parallel BLAS threads only add noise.

torch is optional here: the service's slim API image has none, and its tests (tests/service, tests/dfi_core) must
collect and run without it; only the training tests need it."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("torch") is not None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fashion_train():
    from training.datasets import load_dataset

    return load_dataset("fashion-mnist", "train")
