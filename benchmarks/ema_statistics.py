"""EMA G with averaged vs recomputed BatchNorm statistics, on a checkpoint of a run that kept averaged ones (the
run of docs/stronger-gans.md was started before training/gan/model.py recomputed them).

    python benchmarks/ema_statistics.py --checkpoint CKPT [--classifier CLS] [--out FILE.json]

Sample FD at n = 2,000 with the run's own fixed z (training/evaluation/samples.py's SampleFD, seed = the run's), for:
the raw G, the EMA G as saved, and the EMA G after refresh_ema_statistics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from training.core.checkpoint import load_checkpoint, read_metadata
from training.core.config import config_from_dict
from training.evaluation.samples import SampleFD
from training.gan.config import GANConfig
from training.gan.model import build_gan, refresh_ema_statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--classifier", default="runs/zoo/fashion-mnist-classifier/classifier.safetensors")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ema_statistics.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = config_from_dict(read_metadata(args.checkpoint)["config"], expected=GANConfig)
    modules = build_gan(config)
    load_checkpoint(args.checkpoint, modules)
    fd = SampleFD(args.classifier, config.data.name, config.data.data_dir, config.generator.z_dim, config.fd_samples,
                  config.seed, torch.device("cpu"))  # fmt: skip
    result = {"checkpoint": args.checkpoint, "step": read_metadata(args.checkpoint)["step"], "n": fd.n,
              "fd_raw_G": fd(modules["G"]), "fd_ema_averaged_statistics": fd(modules["G_ema"].module)}  # fmt: skip
    refresh_ema_statistics(modules, config.generator.z_dim, config.batch_size, config.seed)
    result["fd_ema_recomputed_statistics"] = fd(modules["G_ema"].module)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
