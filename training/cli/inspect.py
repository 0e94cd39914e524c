"""`inspect features`: the candidate D^f tensors of a discriminator given as an ONNX graph (name, shape, type),
for `train inverter --discriminator-onnx D.onnx --features NAME[,NAME...]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli.common import user_errors


def inspect_features_command(
    discriminator_onnx: Annotated[Path, typer.Option(help="your D as an ONNX graph (image → ...)")],
) -> None:
    """List D's intermediate float tensors with a batch axis, in graph order; the default D^f is marked."""
    import onnx

    from training.inversion.onnx_graphs import default_feature_tensor, list_feature_tensors

    with user_errors():
        if not discriminator_onnx.is_file():
            raise FileNotFoundError(f"no ONNX graph at {discriminator_onnx}")
        model = onnx.load(str(discriminator_onnx))
        default, _ = default_feature_tensor(model)
        for tensor in list_feature_tensors(model):
            mark = "   <- default D^f (the input of D's last Gemm/MatMul)" if tensor.name == default else ""
            typer.echo(f"{tensor.name}\t{list(tensor.shape)}\t{tensor.dtype}{mark}")
