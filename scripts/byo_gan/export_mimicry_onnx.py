"""The mimicry SNGAN as ONNX graphs, the form a user with only exported graphs brings (what their own exporter
would write: torch.onnx.export, opset 17, dynamic batch; nothing of this project's exporter is used).

    python scripts/byo_gan/export_mimicry_onnx.py --run runs/byo_gan/mimicry-sngan   # → RUN/G.onnx, RUN/D.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mimicry_sngan import NZ, make_d, make_g  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/byo_gan/mimicry-sngan"))
    args = parser.parse_args()
    G, D = make_g().eval(), make_d().eval()
    G.load_state_dict(load_file(str(args.run / "G.safetensors")))
    D.load_state_dict(load_file(str(args.run / "D.safetensors")))
    z = torch.randn(2, NZ)
    for module, example, path, names in (
        (G, z, "G.onnx", ("z", "image")),
        (D, G(z).detach(), "D.onnx", ("image", "logit")),
    ):
        torch.onnx.export(module, (example,), str(args.run / path), input_names=[names[0]], output_names=[names[1]],
                          opset_version=17, dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}},
                          dynamo=False)  # fmt: skip
        print(args.run / path)


if __name__ == "__main__":
    main()
