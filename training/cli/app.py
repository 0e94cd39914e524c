"""`python -m training ...`: the one command table (as litgpt's __main__.py): every command maps to one function
of a command module. Command modules import the library inside the command, so `--help` stays fast; library
packages never import `training.cli` (an import-linter contract in the test command).

python -m training data prepare emoji
python -m training train gan --data fashion-mnist --loss wgan-gp --steps 4000 --seed 0
python -m training train gan --resume runs/00003-.../checkpoints/step-002000.safetensors
python -m training train inverter --gan runs/00003-.../checkpoints/step-010000.safetensors --method dfi
python -m training eval --bundle models/fashion-mnist --methods dfi,dfi_opt --n 1000 --repeats 5
python -m training evaluate gan-metric --bundle models/fashion-mnist --n 1000
python -m training export bundle --gan ... --inverter ... --classifier ... --name fashion-mnist
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from training.cli import cyclic, data, editing, evaluation, export, gan, inspect, inversion, reports, scgan

# group → (help, {command name → function}); "" is the top level.
COMMANDS: dict[str, tuple[str, dict[str, Callable[..., Any]]]] = {
    "": ("DFI training: data sets, the GAN zoo, classifiers, inverters, evaluation, bundles.", {
        "eval": evaluation.eval_command,
    }),
    "data": ("Fetch, prepare and inspect data sets.", {
        "fetch": data.data_fetch,
        "prepare": data.data_prepare,
        "info": data.data_info,
    }),
    "train": ("Train GANs, classifiers, inverters and the papers' other models.", {
        "gan": gan.train_gan_command,
        "classifier": gan.train_classifier_command,
        "inverter": inversion.train_inverter_command,
        "attributes": editing.train_attributes_command,
        "scgan": scgan.train_scgan_command,
        "cyclic": cyclic.train_cyclic_command,
    }),
    "evaluate": ("Score trained models.", {
        "samples": gan.evaluate_samples_command,
        "reconstruction": inversion.reconstruct_command,
        "inverters": evaluation.evaluate_inverters_command,
        "gan-metric": evaluation.gan_metric_command,
        "robustness": evaluation.robustness_command,
        "edits": editing.evaluate_edits_command,
        "cyclic": cyclic.evaluate_cyclic_command,
        "scgan": scgan.evaluate_scgan_command,
    }),
    "report": ("Write result pages under docs/.", {
        "zoo": reports.report_zoo_command,
        "curves": reports.report_curves_command,
        "dfi": reports.report_dfi_command,
        "gaussians": reports.report_gaussians_command,
        "dfeatures": reports.report_dfeatures_command,
        "mode-drop": reports.report_mode_drop_command,
        "truncation": reports.report_truncation_command,
    }),
    "inspect": ("Look inside a GAN you bring before inverting it.", {
        "features": inspect.inspect_features_command,
    }),
    "export": ("Export model bundles (ONNX graphs + manifest) under models/.", {
        "bundle": export.export_bundle_command,
        "classifier": export.export_classifier_command,
        "gan-checkpoint": export.export_gan_checkpoint_command,
        "share-weights": export.export_share_weights_command,
        "directions": export.export_directions_command,
        "folder-directions": editing.export_folder_directions_command,
        "outpaint": scgan.export_outpaint_command,
    }),
}  # fmt: skip


def build_app() -> typer.Typer:
    top_help, top_commands = COMMANDS[""]
    root = typer.Typer(help=top_help, no_args_is_help=True)
    for name, function in top_commands.items():
        root.command(name)(function)
    for group, (help_text, commands) in COMMANDS.items():
        if not group:
            continue
        sub = typer.Typer(help=help_text, no_args_is_help=True)
        for name, function in commands.items():
            sub.command(name)(function)
        root.add_typer(sub, name=group)
    return root


app = build_app()


def main() -> None:
    app()
