"""Shared fixtures. Tests run single-threaded torch: CI has two cores and parallel BLAS threads only add noise.

torch is optional here: the service's slim API image has none, and its tests (tests/service, tests/dfi_core) must
collect and run without it; only the training tests need it."""

from __future__ import annotations

import importlib.util
import os

import pytest

# Default-suite exports use TorchScript (~0.3 s a graph against 3–6 s for dynamo, the product's default, whose
# parity, contract and weight sharing tests/training/export/test_dynamo.py checks explicitly; it sets the exporter
# itself). DFI_ONNX_EXPORTER=dynamo bash scripts/test.sh runs every export with dynamo.
os.environ.setdefault("DFI_ONNX_EXPORTER", "torchscript")

if importlib.util.find_spec("torch") is not None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fashion_train():
    from training.datasets import load_dataset

    return load_dataset("fashion-mnist", "train")
