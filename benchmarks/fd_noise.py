"""The z-draw noise of the sample FD at n = 2,000 for one fixed G (the shipped Fashion-MNIST SNGAN), which sets the
5 % tolerance of training/gan/convergence.py's flat rule.

    python benchmarks/fd_noise.py [--classifier runs/zoo/fashion-mnist-classifier/classifier.safetensors]
writes benchmarks/results/fd_noise.json. The classifier is the zoo's (docs/zoo.md has its command).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from training.evaluation.samples import SampleFD
from training.export.gan_from_bundle import gan_checkpoint_from_bundle
from training.gan.model import load_generator_and_discriminator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classifier", default="runs/zoo/fashion-mnist-classifier/classifier.safetensors")
    parser.add_argument("--bundle", default="models/fashion-mnist")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fd_noise.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        G, _, config = load_generator_and_discriminator(
            gan_checkpoint_from_bundle(args.bundle, Path(tmp) / "gan.safetensors")
        )
    values = []
    for seed in range(args.seeds):  # each seed: another fixed set of z, the same first n real test images
        fd = SampleFD(
            args.classifier, config.data.name, None, config.generator.z_dim, args.n, seed, torch.device("cpu")
        )
        values.append(round(fd(G), 3))
    result = {"bundle": args.bundle, "n": args.n, "fd_per_z_seed": values, "mean": round(statistics.mean(values), 3),
              "std": round(statistics.stdev(values), 3),
              "std_relative": round(statistics.stdev(values) / statistics.mean(values), 4)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
