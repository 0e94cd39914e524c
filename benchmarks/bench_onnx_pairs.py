"""DFI's training pairs (z, D^f(G(z))) from ONNX graphs: ONNX Runtime vs onnx2torch, side by side in one run.

    python benchmarks/bench_onnx_pairs.py [--threads 1] [--batch 64] [--repeats 7] [--out FILE.json]

Opens the shipped models/fashion-mnist/generator.onnx + discriminator_features.onnx (read only) as an ONNX GAN
adapter (`training.inversion.onnx_graphs`) and times, per repeat and alternating the order (A B, B A, ...) so a
shared machine's drift hits both alike: one pair batch (G then D^f, no gradient) and one whole DFI step (pairs,
CN 1024 wide forward + backward + Adam, eq. 5) with each back end — `adapter.generator` / `adapter.features`
(ONNX Runtime for no-gradient CPU calls) and `adapter.generator_torch` / `adapter.features_torch` (onnx2torch).
Prints medians in ms and the ratios onnx2torch / ONNX Runtime (> 1: ONNX Runtime is faster), and the max |Δ| of
the two back ends' pairs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.inversion.adapter import GANSource  # noqa: E402
from training.inversion.networks import ConnectionNetwork, ConnectionNetworkConfig  # noqa: E402
from training.inversion.onnx_graphs import open_onnx_adapter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=10, help="calls per timed block")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = ROOT / "models" / "fashion-mnist"
    source = GANSource("onnx", str(bundle / "generator.onnx"), str(bundle / "discriminator_features.onnx"))
    adapter = open_onnx_adapter(source, None)
    backends = {
        "onnxruntime": (adapter.generator, adapter.features),
        "onnx2torch": (adapter.generator_torch, adapter.features_torch),
    }
    cn = ConnectionNetwork(ConnectionNetworkConfig(adapter.feature_dim, adapter.latent.size))
    optimizer = torch.optim.Adam(cn.parameters(), lr=1e-3)
    rng = torch.Generator().manual_seed(0)
    z = adapter.sample_z(args.batch, rng)

    def pair(name: str) -> torch.Tensor:
        G, features = backends[name]
        with torch.no_grad():
            x = G(z)
        return features(x)  # grad enabled, as in DFI's step: the features' input and weights need none

    def step(name: str) -> None:
        loss = torch.nn.functional.mse_loss(cn(pair(name)), z)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    gap = float((pair("onnxruntime") - pair("onnx2torch")).abs().max())
    times: dict[str, list[float]] = {f"{kind}_{name}": [] for kind in ("pair", "step") for name in backends}
    for name in backends:  # warm-up: ONNX Runtime's session, torch's kernels
        step(name)
    for repeat in range(args.repeats):
        order = [(kind, name) for kind in ("pair", "step") for name in backends]
        for kind, name in order if repeat % 2 == 0 else order[::-1]:
            call = pair if kind == "pair" else step
            started = time.perf_counter()
            for _ in range(args.calls):
                call(name)
            times[f"{kind}_{name}"].append((time.perf_counter() - started) / args.calls * 1000)
    median = {key: round(statistics.median(values), 2) for key, values in times.items()}
    result = {
        "graphs": "models/fashion-mnist/generator.onnx + discriminator_features.onnx",
        "batch": args.batch, "threads": args.threads, "repeats": args.repeats, "median_ms": median,
        "pair_ratio_onnx2torch_over_onnxruntime": round(median["pair_onnx2torch"] / median["pair_onnxruntime"], 3),
        "step_ratio_onnx2torch_over_onnxruntime": round(median["step_onnx2torch"] / median["step_onnxruntime"], 3),
        "max_abs_pair_difference": gap,
    }  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
