"""Export the SCGAN as the bundle's optional `outpaint` graph (two inputs) and check it against torch.

    outpaint.onnx   patch [batch, C, ph, pw] float32 [-1, 1], z_edge [batch, Ze] → image [batch, C, H, W]
                    ẑ_center = CN(D_center^f(patch)); image = G_full(concat(ẑ_center, z_edge))
    scgan.safetensors  the inverter (D_center^f + CN) and G_full with the SCGAN config: enough to rebuild the torch
                    module for the parity check (`training.scgan.model.load_outpainter`)

The export itself is `training.export.onnx.export_graph` with two named inputs (same exporter, spectral-norm folding,
adaptive-pool rewrite and output-shape fix-up as every other graph).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dfi_core.bundle import BATCH_DIM, Bundle, edit_bundle, load_bundle
from training.core.checkpoint import read_metadata, save_checkpoint
from training.export.onnx import DEFAULT_OPSET, Exporter, export_graph
from training.scgan.model import Outpainter, SCGANConfig, load_outpainter, load_scgan

OUTPAINT_FILE = "outpaint.onnx"
SCGAN_FILE = "scgan.safetensors"
INPUT_NAMES = ("patch", "z_edge")
OUTPUT_NAME = "image"
PARITY_TOLERANCE = 1e-4


def export_two_input_graph(
    module: nn.Module,
    examples: tuple[torch.Tensor, torch.Tensor],
    path: str | Path,
    input_names: tuple[str, str] = INPUT_NAMES,
    output_name: str = OUTPUT_NAME,
    opset: int = DEFAULT_OPSET,
    exporter: Exporter | None = None,
) -> Path:
    """Export `module(patch, z_edge)` with the outpaint graph's names (`export_graph` does the work; under dynamo
    both inputs share one batch symbol)."""
    return export_graph(module, examples, path, input_names, output_name, opset, exporter)


def parity_inputs(config: SCGANConfig, n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch-like inputs in [-1, 1] (smooth random blobs, not pure noise) and z_edge ~ N(0, I)."""
    rng = torch.Generator().manual_seed(seed)
    c, s = config.shape[0], config.patch_size
    coarse = torch.rand(n, c, max(s // 4, 1), max(s // 4, 1), generator=rng) * 2 - 1
    patch = nn.functional.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)
    return patch, torch.randn(n, config.z_edge, generator=rng)


def onnx_parity(
    graph: Any, outpainter: nn.Module, patch: torch.Tensor, z_edge: torch.Tensor, batch_sizes: tuple[int, ...] = (1, 64)
) -> dict[str, float]:
    """Max |ONNX Runtime − torch| at each batch size (key "batch_<b>")."""
    with torch.no_grad():
        expected = outpainter(patch, z_edge).numpy()
    a, b = patch.numpy().astype(np.float32), z_edge.numpy().astype(np.float32)
    errors = {}
    for batch in batch_sizes:
        out = np.concatenate([graph(a[i : i + batch], b[i : i + batch]) for i in range(0, len(a), batch)])
        errors[f"batch_{batch}"] = float(np.abs(out - expected).max())
    return errors


def outpaint_entry(config: SCGANConfig, opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    c, h, w = config.shape
    s = config.patch_size
    return {
        "file": OUTPAINT_FILE,
        "inputs": [
            {"name": "patch", "shape": [BATCH_DIM, c, s, s]},
            {"name": "z_edge", "shape": [BATCH_DIM, config.z_edge]},
        ],
        "output": {"name": OUTPUT_NAME, "shape": [BATCH_DIM, c, h, w]},
        "opset": opset,
        "patch": {"top": config.patch_top, "left": config.patch_left, "height": s, "width": s},
        "z_center_size": config.z_center,
        "z_edge_size": config.z_edge,
    }


def save_bundle_weights(
    path: str | Path, outpainter: Outpainter, config: SCGANConfig, extra: dict | None = None
) -> Path:
    """The inverter and G_full only (what the outpaint graph holds), with the SCGAN config."""
    from dataclasses import asdict

    modules = {"inverter": outpainter.inverter, "G_full": outpainter.G_full}
    return save_checkpoint(path, modules, {}, asdict(config), 0, extra=extra)


def add_outpaint(
    bundle_dir: str | Path, checkpoint: str | Path, command: str | None = None, exporter: Exporter | None = None
) -> tuple[Bundle, dict]:
    """Export outpaint.onnx + scgan.safetensors into `bundle_dir`, register the entry, check parity (≤ 1e-4).
    exporter: None → `training.export.onnx.default_exporter()`."""
    bundle_dir = Path(bundle_dir)
    with edit_bundle(bundle_dir) as edit:
        opset = edit.loaded.manifest.exporter.opset
        outpainter, config = load_outpainter(checkpoint)
        shape = edit.loaded.manifest.image.shape
        if tuple(config.shape) != tuple(shape):
            raise ValueError(f"SCGAN image shape {tuple(config.shape)} ≠ bundle image {shape}")
        patch, z_edge = parity_inputs(config)
        export_two_input_graph(outpainter, (patch[:2], z_edge[:2]), bundle_dir / OUTPAINT_FILE, opset=opset,
                               exporter=exporter)  # fmt: skip
        meta = read_metadata(checkpoint)
        # A bundle's own scgan.safetensors is a valid source too (re-exporting a bundle keeps its outpaint graph):
        # its extra already is {"trained": the run's stage logs}.
        trained = meta["extra"]["trained"] if set(meta["extra"]) == {"trained"} else meta["extra"]
        save_bundle_weights(bundle_dir / SCGAN_FILE, outpainter, config, extra={"trained": trained})
        edit.set_graph("outpaint", outpaint_entry(config, opset))
        edit.record_command(command, replaces="python -m training export outpaint")
    bundle = edit.written
    graph = bundle.open_graph("outpaint", providers=["CPUExecutionProvider"])
    rebuilt, _ = load_outpainter(bundle_dir / SCGAN_FILE)  # the bundle's own weights, not the run's
    errors = onnx_parity(graph, rebuilt, patch, z_edge)
    errors["torch_run_vs_bundle"] = float((rebuilt(patch, z_edge) - outpainter(patch, z_edge)).abs().max())
    worst = max(errors.values())
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(f"{bundle_dir / OUTPAINT_FILE}: ONNX Runtime differs from torch by {worst:.2e}")
    from training.export.shared_weights import share_bundle_weights

    share_bundle_weights(bundle_dir)  # G_full's weights once, in scgan.safetensors
    return load_bundle(bundle_dir), errors


__all__ = ["add_outpaint", "export_two_input_graph", "load_scgan", "onnx_parity", "outpaint_entry", "parity_inputs"]
