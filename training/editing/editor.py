"""A bundle's graphs as an editor sees them: invert, generate and categorise, batched (ONNX Runtime, CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dfi_core.bundle import Bundle
from dfi_core.preprocessing import to_model_range


class Editor:
    """invert.onnx / generator.onnx / classifier.onnx of a bundle, batched."""

    def __init__(self, bundle: Bundle, threads: int | None = 1, batch: int = 256) -> None:
        kwargs = {"providers": ["CPUExecutionProvider"], "intra_op_threads": threads}
        self.invert_graph = bundle.open_graph("invert", **kwargs)
        self.generator = bundle.open_graph("generator", **kwargs)
        self.classifier = bundle.open_graph("classifier", **kwargs)
        self.batch = batch

    def _run(self, graph: Any, x: np.ndarray) -> np.ndarray:
        return np.concatenate([graph(x[i : i + self.batch]) for i in range(0, len(x), self.batch)])

    def invert(self, images_uint8: np.ndarray) -> np.ndarray:
        return self._run(self.invert_graph, to_model_range(images_uint8))

    def generate(self, z: np.ndarray) -> np.ndarray:
        return self._run(self.generator, z.astype(np.float32))

    def category(self, images: np.ndarray) -> np.ndarray:
        return self._run(self.classifier, images.astype(np.float32)).argmax(1)
