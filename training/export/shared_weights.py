"""Store each weight of a bundle once: ONNX initializers that repeat a tensor of the bundle's safetensors files
become ONNX external-data references into those files.

A bundle carries the same tensors twice: `invert.onnx` embeds the connection network (and, for an un-normalised
D, D^f) that `inverter.safetensors` also holds for torch (parity checks, rebuilding the GAN), likewise
`generator.onnx` / `generator.safetensors` and `outpaint.onnx` / `scgan.safetensors`. The connection network's
first layer dominates (|D^f| × 1024 floats: 15 MB at R = 7 on Fashion-MNIST), so the duplicate doubled bundles.

Why it works: a safetensors file is an 8-byte header length, a JSON header, then every tensor's raw little-endian
bytes at the offsets the header gives — exactly what ONNX external data points to (`location`, `offset`,
`length`, relative to the .onnx file's folder). ONNX Runtime and `onnx.checker` read such a graph by path. Matching
is by content (sha256 of the bytes), never by name: the exporter renames tensors and may reshape them (a
GroupNorm weight becomes [C, 1]), but bytes that are equal are the same weight. Spectral-norm weights are folded
(W / σ) for export and so differ from the stored W: they stay embedded. No library does this rewrite (onnx's
`convert_model_to_external_data` writes new files; it cannot point into an existing one), hence this module.

The rewrite is exact — the graph computes with the very same float32 bytes — and the bundle's sha256 checksums
cover both files, so a changed safetensors file is refused by `load_bundle` before any graph reads it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data, uses_external_data

from dfi_core.bundle import edit_bundle, load_bundle

# Small tensors (biases, norms) are not worth an indirection: 64 KiB keeps every weight matrix and conv kernel of
# the shipped models and leaves the many tiny vectors embedded.
MIN_SHARED_BYTES = 1 << 16
# graph file → the safetensors file of the same bundle that may hold its weights
BUNDLE_PAIRS = {
    "invert.onnx": "inverter.safetensors",
    "discriminator_features.onnx": "inverter.safetensors",
    "generator.onnx": "generator.safetensors",
    "outpaint.onnx": "scgan.safetensors",
}


def _tensor_index(safetensors_path: Path, min_bytes: int) -> dict[bytes, tuple[int, int]]:
    """sha256 of each float32 tensor's bytes → (absolute file offset, length)."""
    with safetensors_path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
        data = handle.read()
    base = 8 + header_size
    index = {}
    for name, entry in header.items():
        if name == "__metadata__" or entry["dtype"] != "F32":
            continue
        start, end = entry["data_offsets"]
        if end - start >= min_bytes:
            index[hashlib.sha256(data[start:end]).digest()] = (base + start, end - start)
    return index


def share_initializers(onnx_path: str | Path, safetensors_path: str | Path, min_bytes: int = MIN_SHARED_BYTES) -> int:
    """Point `onnx_path`'s large initializers that equal a tensor of `safetensors_path` (same folder) into that
    file; rewrites the .onnx in place and returns the number of bytes no longer embedded (0: nothing to share,
    or already shared)."""
    onnx_path, safetensors_path = Path(onnx_path), Path(safetensors_path)
    if onnx_path.parent.resolve() != safetensors_path.parent.resolve():
        raise ValueError(f"{onnx_path.name} and {safetensors_path.name} must lie in the same folder")
    index = _tensor_index(safetensors_path, min_bytes)
    model = onnx.load(str(onnx_path), load_external_data=False)
    moved = 0
    for tensor in model.graph.initializer:
        if uses_external_data(tensor) or tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor).astype("<f4", copy=False)
        if values.nbytes < min_bytes or values.nbytes == 0:
            continue
        found = index.get(hashlib.sha256(values.tobytes()).digest())
        if found is None:
            continue
        offset, length = found
        set_external_data(tensor, safetensors_path.name, offset=offset, length=length)
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        moved += length
    if moved:
        # Serialise directly: onnx.save would write external tensors that still hold data back into their files.
        tmp = onnx_path.with_name(f".{onnx_path.name}.tmp")
        tmp.write_bytes(model.SerializeToString())
        onnx.checker.check_model(str(tmp), full_check=True)  # by path, so it resolves the external data
        tmp.replace(onnx_path)
    return moved


def _same_outputs(before: Path, after: Path) -> None:
    """The rewritten graph gives bit-identical outputs on a fixed batch (it reads the very same bytes)."""
    import onnxruntime as ort

    def run(path: Path) -> list[np.ndarray]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {}
        for node in session.get_inputs():
            shape = [3 if not isinstance(d, int) else d for d in node.shape]
            feeds[node.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        return session.run(None, feeds)

    if any(not np.array_equal(a, b) for a, b in zip(run(before), run(after), strict=True)):
        raise RuntimeError(f"{after.name}: outputs changed when its weights were shared; nothing was rewritten")


def share_bundle_weights(
    bundle_dir: str | Path, min_bytes: int = MIN_SHARED_BYTES, command: str | None = None
) -> dict[str, int]:
    """Share every graph's weights with the bundle's safetensors files (`BUNDLE_PAIRS`), check each rewritten graph
    against the original, record the pairs in `manifest.exporter.shared_weights` (and `command`, if given, in
    training.commands) and re-hash the files. Returns bytes saved per graph file. Idempotent."""
    with edit_bundle(bundle_dir) as edit:
        folder, files = edit.folder, edit.loaded.manifest.files
        saved: dict[str, int] = {}
        for graph_file, weights_file in BUNDLE_PAIRS.items():
            graph, weights = folder / graph_file, folder / weights_file
            if graph_file not in files or weights_file not in files:
                continue
            original = folder / f".{graph_file}.orig"
            original.write_bytes(graph.read_bytes())
            try:
                saved[graph_file] = share_initializers(graph, weights, min_bytes)
                if saved[graph_file]:
                    _same_outputs(original, graph)
                    edit.set_shared_weights(graph_file, weights_file)
            except BaseException:
                original.replace(graph)
                raise
            original.unlink()
        edit.record_command_once(command)
    load_bundle(folder)
    return saved
