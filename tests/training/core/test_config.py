"""The one config rule (training/core/config.py): every registered kind round-trips through JSON, unknown keys and
wrong kinds are refused with the names, renamed fields of old checkpoints still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from training.classifiers.attributes import AttributeTrainConfig
from training.classifiers.config import ClassifierTrainConfig
from training.classifiers.networks import ClassifierConfig
from training.core.config import config_from_dict, from_dict, registered_kinds, to_dict
from training.cyclic.model import CyclicConfig
from training.datasets.config import DataConfig
from training.gan.config import gan_config
from training.inversion.dfi import InverterConfig
from training.inversion.networks import FeatureExtractorConfig
from training.scgan.model import SCGANConfig

ROOT = Path(__file__).resolve().parents[3]

EXAMPLES = {
    "gan": gan_config(DataConfig("fashion-mnist"), (1, 28, 28), "wgan-gp", z_dim=8, steps=3),
    "classifier": ClassifierTrainConfig(DataConfig("emoji"), ClassifierConfig((3, 64, 64), 7, width=8), steps=2),
    "attributes": AttributeTrainConfig(steps=2),
    "inverter": InverterConfig(
        "runs/x/step-000001.safetensors", features=FeatureExtractorConfig(("actv7-0", "last"), 7)
    ),
    "scgan": SCGANConfig(shape=(3, 64, 64), patch_size=32, patch_top=16, patch_left=16),
    "cyclic": CyclicConfig(model="alice"),
}


def test_every_kind_has_an_example_here() -> None:
    assert set(EXAMPLES) == set(registered_kinds())


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_config_round_trips_through_json(kind: str) -> None:
    config = EXAMPLES[kind]
    values = json.loads(json.dumps(to_dict(config)))  # tuples become lists on the way, as in a checkpoint
    rebuilt = config_from_dict(values)
    assert rebuilt == config and type(rebuilt) is type(config)
    assert config_from_dict(values, expected=type(config)) == config


def test_unknown_keys_and_wrong_kinds_are_refused_by_name() -> None:
    values = to_dict(EXAMPLES["gan"])
    with pytest.raises(ValueError, match=r"unknown config keys \['lr'\]"):
        config_from_dict({**values, "lr": 0.1})
    with pytest.raises(ValueError, match=r"GANConfig.optim: unknown config keys \['momentum'\]"):
        config_from_dict({**values, "optim": {**values["optim"], "momentum": 0.9}})
    with pytest.raises(ValueError, match="expected a 'inverter' config, got kind 'gan'"):
        config_from_dict(values, expected=InverterConfig)
    with pytest.raises(ValueError, match="unknown config kind 'vae'"):
        config_from_dict({"kind": "vae"})
    with pytest.raises(ValueError, match="not a scgan config"):
        from_dict(SCGANConfig, {"kind": "gan"})


def test_the_shipped_scgan_checkpoint_loads_with_its_old_field_name() -> None:
    # models/fashion-mnist/scgan.safetensors was written when the SCGAN config said `image_shape`.
    with safe_open(str(ROOT / "models/fashion-mnist/scgan.safetensors"), "pt") as handle:
        values = json.loads(handle.metadata()["config"])
    assert "image_shape" in values
    config = config_from_dict(values, expected=SCGANConfig)
    assert config.shape == (1, 28, 28) and config.patch_size == 14
