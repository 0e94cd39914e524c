"""Rebuild a GAN checkpoint (G and D, frozen weights only) from a shipped model bundle.

A bundle carries G (generator.safetensors, for refinement) and the whole discriminator inside
inverter.safetensors (D^f is D up to its taps; the checkpoint keeps D's logit too), plus the GAN's config in the
inverter's metadata. That is everything `train inverter --gan` needs, so sweeps over taps, R and CN depth
(IJCV sec. 4.7, Tables 4/5/7) can run on the exact shipped generator without the training run folder.
No optimiser state is restored: the result is for frozen use (DFI, evaluation), not for resuming GAN training.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from dfi_core.bundle import MANIFEST_NAME, load_bundle
from training.core.checkpoint import save_checkpoint
from training.core.config import config_from_dict, to_dict
from training.core.runs import RunDir
from training.gan.config import GANConfig
from training.gan.model import build_gan

D_PREFIX = "inverter.features.discriminator."


def gan_checkpoint_from_bundle(bundle: str | Path, out: str | Path) -> Path:
    """Write a dfi-checkpoint/1 file with the bundle's G and D; raises ValueError naming what is missing."""
    bundle = Path(bundle)
    inverter_path, generator_path = bundle / "inverter.safetensors", bundle / "generator.safetensors"
    for path in (inverter_path, generator_path):
        if not path.is_file():
            raise ValueError(f"{bundle} has no {path.name}: cannot rebuild its GAN")
    with safe_open(str(inverter_path), framework="pt") as handle:
        meta = handle.metadata() or {}
    try:
        gan_dict = json.loads(meta["extra"])["gan_config"]
    except (KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{inverter_path} does not record its GAN's config (metadata 'extra.gan_config')") from error
    gan = config_from_dict(gan_dict, expected=GANConfig)
    if not isinstance(gan, GANConfig):
        raise ValueError(f"{inverter_path}: extra.gan_config is not a GAN config")
    modules = build_gan(gan)
    if set(modules) != {"G", "D"}:  # RFGAN/DFM's extra modules are not in a bundle
        raise ValueError(f"a {gan.loss.name} GAN needs {sorted(set(modules) - {'G', 'D'})}, which bundles do not carry")
    modules["G"].load_state_dict(load_file(str(generator_path)))  # strict: every key must match
    inverter = load_file(str(inverter_path))
    d_state = {k[len(D_PREFIX) :]: v for k, v in inverter.items() if k.startswith(D_PREFIX)}
    if not d_state:
        raise ValueError(f"{inverter_path} holds no discriminator weights (prefix {D_PREFIX!r})")
    modules["D"].load_state_dict(d_state)  # strict: a D^f that dropped layers would fail here, by name
    # step = the GAN's configured length: the bundle's G is its final checkpoint (recorded in the manifest)
    path = save_checkpoint(out, modules, {}, to_dict(gan), step=gan.steps, extra={"rebuilt_from_bundle": str(bundle)})
    _write_training_command(bundle, Path(out))
    return path


def _write_training_command(bundle: Path, out: Path) -> None:
    """RUN/checkpoints/step-N.safetensors → RUN/command.txt with the GAN's original training command from the
    manifest, so that a bundle exported from the rebuilt checkpoint still records how its GAN was trained."""
    run = RunDir.holding(out)
    if run is None or not (bundle / MANIFEST_NAME).is_file():
        return
    commands = load_bundle(bundle, verify=False).manifest.training.commands
    gan_commands = [c for c in commands if c.startswith("python -m training train gan ")]
    if gan_commands and not run.command_path.exists():
        run.write_command(gan_commands[0])
