"""Refinement (IJCV eq. 2) from the two sources of a differentiable G, side by side in one run: generator.onnx via
onnx2torch and generator.safetensors + dfi_core.generator. Writes benchmarks/results/refinement_cpu.json.

    python benchmarks/bench_refinement.py --out benchmarks/results/refinement_cpu.json [--repeats 7] [--threads 2]

For each shipped bundle and batch size: the first `batch` test images, ẑ from invert.onnx, then 50 Adam steps of
eq. 2 (`dfi_core.refinement.refine`, the service's call) with each G. The two sources alternate within every
repeat (A B, B A, ...), so drift of a shared machine hits both alike; the result is the median seconds per source
and the ratio onnx2torch / safetensors, the median of the per-repeat (paired) ratios (> 1: the safetensors G is
faster). `noise` is half the inter-quartile range of those ratios; `verdict` says "safetensors faster" where the
ratio exceeds 1 + noise, "onnx2torch faster" below 1 − noise, otherwise "tie".
Run with --threads 1 on a shared machine: two torch threads on two cores that other processes also use make
OpenMP wait on each other, and timings then swing by 10× (measured here). Also: the
load time of each source, the parity at load (`RefinementGenerator.parity`), and the refined mean loss of both
(the same images from the same ẑ, so any gap is the torch kernels, not the method).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfi_core.bundle import load_bundle  # noqa: E402
from dfi_core.datasets import load_split  # noqa: E402
from dfi_core.preprocessing import to_model_range  # noqa: E402
from dfi_core.refinement import SOURCES, load_bundle_generator, refine  # noqa: E402

BUNDLES = ("fashion-mnist", "emoji")
STEPS = 50  # the paper's refinement length (IJCV sec. 4)


def bench_bundle(name: str, batches: list[int], repeats: int) -> dict:
    bundle = load_bundle(ROOT / "models" / name)
    data = load_split(bundle.manifest.dataset.name, "test")
    generators, load_s = {}, {}
    for source in SOURCES:
        start = time.perf_counter()
        generators[source] = load_bundle_generator(bundle, prefer=source)
        load_s[source] = round(time.perf_counter() - start, 3)
    chosen = load_bundle_generator(bundle)  # what the service uses
    invert = bundle.open_graph("invert", providers=["CPUExecutionProvider"])
    out: dict = {"load_s": load_s, "parity_at_load": chosen.parity, "auto_source": chosen.source, "batches": {}}
    for batch in batches:
        x_np = to_model_range(data.images[:batch])
        x, z0 = torch.from_numpy(x_np), torch.from_numpy(invert(x_np))
        seconds: dict[str, list[float]] = {source: [] for source in SOURCES}
        losses: dict[str, float] = {}
        for source in SOURCES:  # warm-up: first-call allocations and kernel selection
            refine(generators[source].module, x, z0, steps=2)
        for repeat in range(repeats):
            order = SOURCES if repeat % 2 == 0 else SOURCES[::-1]
            for source in order:
                start = time.perf_counter()
                _, history = refine(generators[source].module, x, z0, steps=STEPS, method="adam")
                seconds[source].append(time.perf_counter() - start)
                losses[source] = history[-1]
        ratios = [o / s for o, s in zip(seconds["onnx2torch"], seconds["safetensors"], strict=True)]
        quartiles = statistics.quantiles(ratios, n=4)
        ratio, noise = statistics.median(ratios), (quartiles[2] - quartiles[0]) / 2
        verdict = "safetensors faster" if ratio > 1 + noise else "onnx2torch faster" if ratio < 1 - noise else "tie"
        median = {source: statistics.median(values) for source, values in seconds.items()}
        out["batches"][str(batch)] = {
            "seconds_median": {source: round(value, 4) for source, value in median.items()},
            "ms_per_image": {source: round(1000 * value / batch, 2) for source, value in median.items()},
            "ratio_onnx2torch_over_safetensors": round(ratio, 3),
            "noise": round(noise, 3),
            "verdict": verdict,
            "refined_mse": {source: float(f"{value:.6g}") for source, value in losses.items()},
            "start_mse": float(f"{float(((generators['safetensors'].module(z0) - x) ** 2).mean()):.6g}"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "refinement_cpu.json")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    command = "python benchmarks/bench_refinement.py " + " ".join(sys.argv[1:])
    result = {
        "command": command.strip(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },  # fmt: skip
        "steps": STEPS,
        "method": "adam",
        "repeats": args.repeats,
        "bundles": {},
    }
    with torch.no_grad():  # refine() enables grad itself; everything else here is inference
        for name in BUNDLES:
            result["bundles"][name] = bench_bundle(name, args.batches, args.repeats)
            print(name, json.dumps(result["bundles"][name]["batches"]), flush=True)
    verdicts = [entry["verdict"] for bundle in result["bundles"].values() for entry in bundle["batches"].values()]
    result["safetensors_faster_anywhere"] = "safetensors faster" in verdicts
    result["onnx2torch_faster_anywhere"] = "onnx2torch faster" in verdicts
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
