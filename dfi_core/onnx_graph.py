"""A thin ONNX Runtime wrapper that checks its input at the boundary.

One output, one or more inputs (the bundle's contract: one input for every graph but `outpaint`, which takes
the patch and z_edge). Names, shapes and the element type are read from
the session itself, not from the manifest, so a graph and a manifest that disagree cannot hide each other's
mistake. A numpy input of the wrong rank, wrong non-batch dims, wrong dtype (float64 is refused, not silently
cast) or with NaN/inf values raises `ValueError` naming the expected shape.

onnxruntime is imported lazily: importing `dfi_core` stays cheap and free of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")

# ONNX tensor element types → numpy dtypes (the ones a DFI graph can have).
_ONNX_TYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint8)": np.dtype(np.uint8),
}


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build offers it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in DEFAULT_PROVIDERS if p in available] or list(available)


def _format_shape(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class OnnxGraph:
    """`OnnxGraph(path)(array) -> array`: one ONNX Runtime session with input validation.

    providers: ONNX Runtime execution providers in order of preference (default: CUDA if available, then CPU);
        `provider` records the one the session actually uses (ONNX Runtime falls back silently).
    intra_op_threads: threads for one operator (None: ONNX Runtime's default, all cores).
    allow_spinning: whether the intra-op pool threads busy-wait for work after each call (ONNX Runtime's
        `session.intra_op.allow_spinning`; None: its default, on). A server between small calls wants it off: the
        spinning threads eat the cores the event loop, decoding and encoding need (benchmarks/README.md, "Serving
        paths side by side": /invert at one image per request 174 → 240 images/s with it off, on 2 cores).
    """

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        name: str | None = None,
        allow_spinning: bool | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.name = name or self.path.name
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.name}: ONNX graph {self.path} does not exist")
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            if intra_op_threads < 1:
                raise ValueError(f"intra_op_threads must be ≥ 1, got {intra_op_threads}")
            options.intra_op_num_threads = intra_op_threads
        if allow_spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.requested_providers = list(providers) if providers is not None else default_providers()
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=self.requested_providers)
        self.providers: list[str] = list(self.session.get_providers())
        self.provider: str = self.providers[0]

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if not inputs or len(outputs) != 1:
            raise ValueError(
                f"{self.name}: expected a graph with inputs and one output, got inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
            )
        for spec in inputs:
            if spec.type not in _ONNX_TYPES:
                raise ValueError(f"{self.name}: unsupported input type {spec.type} of {spec.name}")
        self.input_names: list[str] = [i.name for i in inputs]
        # Dynamic dims are strings ('batch') or None in ONNX Runtime; fixed dims are ints.
        self.input_shapes: list[tuple[int | str, ...]] = [tuple(_dim(d) for d in i.shape) for i in inputs]
        self.input_dtypes: list[np.dtype] = [_ONNX_TYPES[i.type] for i in inputs]
        self.input_name, self.input_shape, self.input_dtype = (
            self.input_names[0],
            self.input_shapes[0],
            self.input_dtypes[0],
        )
        self.output_name: str = outputs[0].name
        self.output_shape: tuple[int | str, ...] = tuple(_dim(d) for d in outputs[0].shape)

    def _expected(self, index: int) -> str:
        return f"'{self.input_names[index]}' {_format_shape(self.input_shapes[index])} {self.input_dtypes[index]}"

    @property
    def expected(self) -> str:
        return self._expected(0)

    def validate(self, array: Any, index: int = 0) -> np.ndarray:
        """Input `index` as a C-contiguous array of the graph's dtype, or ValueError naming the expected shape."""
        expected, input_shape, input_dtype = self._expected(index), self.input_shapes[index], self.input_dtypes[index]
        if not isinstance(array, np.ndarray):
            raise ValueError(f"{self.name}: expected {expected} as a numpy array, got {type(array).__name__}")
        if array.ndim != len(input_shape):
            raise ValueError(
                f"{self.name}: expected {expected} (rank {len(input_shape)}), "
                f"got rank {array.ndim} with shape {list(array.shape)}"
            )
        for axis, (want, got) in enumerate(zip(input_shape, array.shape, strict=True)):
            if isinstance(want, int) and want != got:
                problem = f"got shape {list(array.shape)} (axis {axis}: {got} ≠ {want})"
                raise ValueError(f"{self.name}: expected {expected}, {problem}")
            if not isinstance(want, int) and got == 0:
                raise ValueError(f"{self.name}: expected {expected}, got an empty batch {list(array.shape)}")
        if array.dtype != input_dtype:
            raise ValueError(
                f"{self.name}: expected {expected}, got dtype {array.dtype} "
                f"(convert explicitly, e.g. array.astype(np.{input_dtype}))"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise ValueError(f"{self.name}: expected {expected} with finite values, got {bad} NaN/inf value(s)")
        return np.ascontiguousarray(array)

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        if len(arrays) != len(self.input_names):
            raise ValueError(
                f"{self.name}: expected {len(self.input_names)} input(s) {self.input_names}, got {len(arrays)}"
            )
        feeds = {
            name: self.validate(array, i) for i, (name, array) in enumerate(zip(self.input_names, arrays, strict=True))
        }
        batches = {len(a) for a in feeds.values()}
        if len(batches) > 1:
            raise ValueError(f"{self.name}: inputs {self.input_names} have different batch sizes {sorted(batches)}")
        return self.session.run([self.output_name], feeds)[0]

    def __repr__(self) -> str:
        return (
            f"OnnxGraph({self.name!r}: {self.input_name} {_format_shape(self.input_shape)} → "
            f"{self.output_name} {_format_shape(self.output_shape)}, provider={self.provider})"
        )


def _dim(d: Any) -> int | str:
    if isinstance(d, int) and d >= 0:
        return d
    return d if isinstance(d, str) and d else "?"  # an unnamed dynamic dim
