"""Re-export the shipped bundles' graphs with the dynamo exporter and compare them with the shipped graphs.

    python scripts/reexport_check.py [--models models] [--out benchmarks/results/reexport_dynamo.json] [--n 256]

For each bundle under --models (only read, never written) the torch modules are rebuilt from the bundle's own files,
as tests/models/test_shipped_bundles.py does: the inverter (D^f + CN) from inverter.safetensors, G from
generator.safetensors, the SCGAN outpainter from scgan.safetensors. They are exported into a temporary folder
through the bundle pipeline — `export_bundle`, the inverter weights and weight sharing as `bundle_from_adapter` does,
`add_outpaint` — once with each exporter (dynamo, then TorchScript for the time and as a control: the shipped
graphs were written by TorchScript). The classifier ships no torch weights: its graph is converted back to torch with
onnx2torch and that module is re-exported (a round trip; reported as such). Every graph is then run with ONNX
Runtime (CPU) next to the shipped one on real inputs: the first --n test images (Fashion-MNIST from the Debian
package, emoji from ~/.cache/dfi) for the image graphs; for G both z ~ N(0, I) and the ẑ the shipped invert graph
gives for those images; for outpaint the images' patches with z_edge ~ N(0, I). Batches of 64 and of 1.

Recorded per bundle, exporter and graph: max |re-export − shipped| (ONNX Runtime both), max |re-export − torch|
(the exporters' own parity checks), export seconds, file sizes and which graphs share weights with the bundle's
safetensors; then the versions and the command. Exit status 1 when a dynamo graph differs from the shipped one by
more than the parity tolerance (1e-4) or its bundle shares weights otherwise than the shipped one.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dfi_core.bundle import Bundle, edit_bundle, load_bundle  # noqa: E402
from dfi_core.datasets import load_split  # noqa: E402
from dfi_core.preprocessing import to_model_range  # noqa: E402
from dfi_core.refinement import load_refinement_generator  # noqa: E402
from training.export import onnx as export_onnx  # noqa: E402
from training.export import outpaint as export_outpaint  # noqa: E402
from training.export.bundle import INVERTER_FILE, PARITY_TOLERANCE  # noqa: E402
from training.export.shared_weights import share_bundle_weights  # noqa: E402
from training.inversion.dfi import load_export_ready  # noqa: E402

CPU = ["CPUExecutionProvider"]
EXPORTERS = ("dynamo", "torchscript")


class ExportTimer:
    """Wraps `export_graph` where the bundle pipeline looks it up and records the seconds per graph file."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.original: Callable[..., Path] = export_onnx.export_graph

    def __enter__(self) -> ExportTimer:
        def timed(*args: Any, **kwargs: Any) -> Path:
            start = time.perf_counter()
            path = self.original(*args, **kwargs)
            self.seconds[Path(path).name] = round(time.perf_counter() - start, 2)
            return path

        export_onnx.export_graph = timed  # export_bundle's global
        export_outpaint.export_graph = timed  # add_outpaint's import
        return self

    def __exit__(self, *_: object) -> None:
        export_onnx.export_graph = self.original
        export_outpaint.export_graph = self.original


def run(bundle: Bundle, graph: str, *inputs: np.ndarray, batch: int) -> np.ndarray:
    session = bundle.open_graph(graph, providers=CPU)
    n = len(inputs[0])
    return np.concatenate([session(*(x[i : i + batch] for x in inputs)) for i in range(0, n, batch)])


def graph_inputs(shipped: Bundle, images: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray, ...]]:
    """Real inputs for every graph of the shipped bundle (see the module docstring)."""
    rng = np.random.default_rng(seed)
    z_prior = rng.standard_normal((len(images), shipped.manifest.latent.size)).astype(np.float32)
    z_hat = run(shipped, "invert", images, batch=64)
    inputs: dict[str, tuple[np.ndarray, ...]] = {
        "invert": (images,),
        "discriminator_features": (images,),
        "generator": (np.concatenate([z_prior, z_hat]).astype(np.float32),),
    }
    graphs = shipped.manifest.graphs
    if graphs.classifier is not None:
        inputs["classifier"] = (images,)
    if graphs.outpaint is not None:
        box = graphs.outpaint.patch
        patch = np.ascontiguousarray(images[:, :, box.top : box.top + box.height, box.left : box.left + box.width])
        z_edge = rng.standard_normal((len(images), graphs.outpaint.z_edge_size)).astype(np.float32)
        inputs["outpaint"] = (patch, z_edge)
    return inputs


def reexport(shipped: Bundle, out: Path, exporter: str, images: np.ndarray) -> tuple[Bundle, dict[str, Any]]:
    """The shipped bundle's graphs exported again from its torch weights into `out` (see the module docstring)."""
    manifest = json.loads(shipped.manifest.model_dump_json())
    inverter = load_export_ready(shipped.path(INVERTER_FILE))
    G = load_refinement_generator(shipped.path(shipped.manifest.refinement.file))
    notes: dict[str, Any] = {}
    with ExportTimer() as timer:
        folder = export_onnx.export_bundle(
            out, shipped.name, G, inverter.features, inverter, dataset=manifest["dataset"],
            training={"commands": [], "seeds": {}, "checkpoints": []}, metrics={},
            gan_config=manifest["training"]["gan_config"], opset=shipped.manifest.exporter.opset, exporter=exporter,
        )  # fmt: skip
        torch_parity = export_onnx.check_parity(folder, G, inverter.features, inverter)
        with edit_bundle(folder) as edit:  # as training.export.bundle.bundle_from_adapter ships it
            edit.add_file(shipped.path(INVERTER_FILE), INVERTER_FILE)
        share_bundle_weights(folder)
        if shipped.manifest.graphs.outpaint is not None:
            _, errors = export_outpaint.add_outpaint(folder, shipped.path("scgan.safetensors"), exporter=exporter)
            torch_parity["outpaint"] = max(v for k, v in errors.items() if k.startswith("batch_"))
        if shipped.manifest.graphs.classifier is not None:
            notes["classifier"] = classifier_round_trip(shipped, folder, exporter, images, torch_parity)
    return load_bundle(folder), {"export_s": timer.seconds, "torch_parity": torch_parity, "notes": notes}


def classifier_round_trip(
    shipped: Bundle, folder: Path, exporter: str, images: np.ndarray, torch_parity: dict[str, float]
) -> str:
    """classifier.onnx → onnx2torch → `export_graph` with `exporter` → registered in `folder`'s bundle."""
    from training.inversion.onnx_graphs import convert_graph

    entry = shipped.manifest.graphs.classifier
    module = convert_graph(onnx.load(str(shipped.path(entry.file))), "classifier")
    example = torch.from_numpy(images[:2])
    failed = None
    with edit_bundle(folder) as edit:  # the new file is listed (and hashed) when the block ends
        try:
            export_onnx.export_graph(module, example, folder / entry.file, entry.input.name, entry.output.name,
                                     opset=entry.opset, exporter=exporter)  # fmt: skip
        except Exception as error:  # recorded, not hidden: the JSON says which exporter could not do it and why
            (folder / entry.file).unlink(missing_ok=True)
            failed = f"{exporter} could not export the onnx2torch classifier: {type(error).__name__}: {error}"[:400]
        else:
            edit.set_graph("classifier", json.loads(entry.model_dump_json()))
            edit.set_class_names(shipped.manifest.dataset.class_names)
    if failed:
        return failed
    with torch.no_grad():
        expected = module(torch.from_numpy(images)).numpy()
    graph = load_bundle(folder).open_graph("classifier", providers=CPU)
    torch_parity["classifier"] = float(np.abs(graph(images) - expected).max())
    return "round trip: the bundle ships no classifier weights, so onnx2torch's module of classifier.onnx was exported"


def compare(shipped: Bundle, again: Bundle, inputs: dict[str, tuple[np.ndarray, ...]]) -> dict[str, dict[str, float]]:
    result = {}
    for graph, feeds in inputs.items():
        if graph not in again.manifest.graphs.entries():
            continue
        reference = run(shipped, graph, *feeds, batch=64)
        worst = 0.0
        for batch, rows in ((64, None), (1, 16)):  # batch 1 on the first 16 rows: the dynamic axis at its edge
            part = tuple(x[:rows] for x in feeds) if rows else feeds
            worst = max(worst, float(np.abs(run(again, graph, *part, batch=batch) - reference[: len(part[0])]).max()))
        result[graph] = {"max_abs_vs_shipped": worst, "max_abs_shipped_output": float(np.abs(reference).max())}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "reexport_dynamo.json")
    parser.add_argument("--n", type=int, default=256, help="real test images per bundle")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (export and parity)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime
    import onnxscript

    report: dict[str, Any] = {
        "command": "python " + shlex.join([str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]]),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },  # fmt: skip
        "machine": f"{platform.machine()}, torch threads {args.threads}",
        "tolerance": PARITY_TOLERANCE,
        "inputs": f"first {args.n} test images per data set (model range [-1, 1]); G: {args.n} z ~ N(0, I) seed 0 and "
        f"the shipped invert graph's ẑ of the images; outpaint: the images' patches, z_edge ~ N(0, I) seed 0",
        "bundles": {},
    }
    failures = []
    for folder in sorted(p.parent for p in args.models.glob("*/manifest.json")):
        shipped = load_bundle(folder)
        images = to_model_range(load_split(shipped.manifest.dataset.name, "test").images[: args.n])
        inputs = graph_inputs(shipped, images, seed=0)
        entry: dict[str, Any] = {"shipped_exporter": shipped.manifest.exporter.exporter,
                                 "shipped_shared_weights": shipped.manifest.exporter.shared_weights}  # fmt: skip
        for exporter in EXPORTERS:
            with tempfile.TemporaryDirectory(prefix=f"reexport-{exporter}-") as tmp:
                start = time.perf_counter()
                again, info = reexport(shipped, Path(tmp), exporter, images)
                total = round(time.perf_counter() - start, 1)
                graphs = compare(shipped, again, inputs)
                for graph, values in graphs.items():
                    values["max_abs_vs_torch"] = info["torch_parity"].get(graph)
                    values["export_s"] = info["export_s"].get(again.manifest.graphs.entries()[graph].file)
                    model = onnx.load(str(again.path(again.manifest.graphs.entries()[graph].file)),
                                      load_external_data=False)  # fmt: skip
                    values["opset"] = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
                    if exporter == "dynamo" and values["max_abs_vs_shipped"] > PARITY_TOLERANCE:
                        failures.append(f"{shipped.name}/{graph}: {values['max_abs_vs_shipped']:.2e}")
                sizes = {f: again.path(f).stat().st_size for f in again.manifest.files if f.endswith(".onnx")}
                if (
                    exporter == "dynamo"
                    and again.manifest.exporter.shared_weights != shipped.manifest.exporter.shared_weights
                ):
                    failures.append(f"{shipped.name}: shared weights {again.manifest.exporter.shared_weights}")
                entry[exporter] = {"exporter": again.manifest.exporter.exporter, "pipeline_s": total,
                                   "onnx_file_bytes": sizes,
                                   "shared_weights": again.manifest.exporter.shared_weights, "graphs": graphs,
                                   "notes": info["notes"]}  # fmt: skip
                line = ", ".join(f"{g} Δ={v['max_abs_vs_shipped']:.2e} ({v['export_s']} s)" for g, v in graphs.items())
                print(f"{shipped.name} {exporter}: {line}", flush=True)
        report["bundles"][shipped.name] = entry
        entry["shipped_onnx_file_bytes"] = {f: shipped.path(f).stat().st_size for f in shipped.manifest.files
                                            if f.endswith(".onnx")}  # fmt: skip
    report["all_dynamo_graphs_within_tolerance_and_shared_as_shipped"] = not failures
    report["failures"] = failures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}" + (f"; beyond {PARITY_TOLERANCE}: {failures}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
