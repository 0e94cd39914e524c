"""DFI on a frozen classifier's features (IJCV sec. 4.6, "DFI – VGG16"): the same CN on the data set's classifier's
penultimate features instead of D^f. The inverter trains, its config round-trips and rebuilds it from the checkpoint
alone, CN's input is the classifier's feature size, the classifier never moves, and taps / pooling / the ENC_*
methods / a bundle are refused with it by name.

Tiny models as in test_dfi.py: a width-8 SNGAN trained for 2 steps and a width-8 classifier trained for 20, enough
to test the machinery, not the method's quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dfi_core.bundle import sha256_file
from training.classifiers.classifier import load_classifier, train_classifier
from training.classifiers.config import ClassifierTrainConfig
from training.classifiers.networks import ClassifierConfig
from training.cli.app import app
from training.core.config import config_from_dict, from_dict, to_dict
from training.datasets.config import DataConfig
from training.export.bundle import build_bundle
from training.gan.config import gan_config
from training.gan.train import train_gan
from training.inversion.dfi import (
    InverterConfig,
    fit_inverter,
    infer_latents,
    load_gan_split,
    load_inverter,
    load_inverter_module,
    open_adapter,
    read_gan_config,
    train_inverter,
)
from training.inversion.networks import ClassifierFeatures, ClassifierSource, FeatureExtractorConfig

FEATURE_DIM = 24  # the tiny classifier's penultimate size: unlike |z| = 8 and unlike D^f's size
runner = CliRunner()


def _classifier(folder: Path, seed: int = 0) -> Path:
    config = ClassifierTrainConfig(DataConfig("fashion-mnist"),
                                   ClassifierConfig((1, 28, 28), 10, width=8, feature_dim=FEATURE_DIM),
                                   steps=20, batch_size=16, lr=3e-3, seed=seed, device="cpu")  # fmt: skip
    return train_classifier(config, folder, quiet=True)[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    gan = gan_config(DataConfig("fashion-mnist"), (1, 28, 28), "sngan", z_dim=8, g_width=8, d_width=8,
                     feature_dim=16, steps=2, batch_size=16, log_every=1, sample_every=2, checkpoint_every=2,
                     device="cpu")  # fmt: skip
    return {"gan": train_gan(gan, root / "gan", quiet=True), "classifier": _classifier(root / "cls")}


def classifier_inverter(gan: Path, classifier: Path, steps: int = 60, **overrides) -> InverterConfig:
    values = dict(features=FeatureExtractorConfig.of_classifier(classifier), hidden=128, batch_size=64, lr=3e-3,
                  log_every=10, sample_every=steps, device="cpu")  # fmt: skip
    return InverterConfig(str(gan), steps=steps, **{**values, **overrides})


def test_trains_on_the_frozen_classifier_features(models, tmp_path: Path) -> None:
    before, _ = load_classifier(models["classifier"])
    path, inverter = fit_inverter(classifier_inverter(models["gan"], models["classifier"]), tmp_path, quiet=True)

    assert isinstance(inverter.features, ClassifierFeatures)
    assert inverter.connection_network.cfg.in_dim == FEATURE_DIM  # CN reads the classifier's penultimate features
    d_features = open_adapter(InverterConfig(str(models["gan"]), device="cpu")).feature_dim
    assert d_features != FEATURE_DIM  # …and not D^f, whose size differs
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 60
    assert records[-1]["heldout_latent_error"] < records[0]["heldout_latent_error"]

    # Frozen: every weight and batch-norm statistic of the classifier is as its checkpoint has it, after 60 Adam steps
    # that moved CN (the optimiser only ever sees CN's parameters).
    state = inverter.features.trunk.state_dict()
    assert state.keys() == before.trunk.state_dict().keys()
    for name, value in before.trunk.state_dict().items():
        assert torch.equal(state[name], value), f"classifier {name} changed while CN trained"
    assert not any(p.requires_grad for p in inverter.features.parameters())
    inverter.train()
    assert not inverter.features.training and inverter.connection_network.training

    recorded = json.loads((tmp_path / "config.json").read_text())["features"]
    assert recorded["network"] == "classifier" and recorded["taps"] == []
    assert recorded["classifier"]["checkpoint"] == str(models["classifier"].resolve())
    assert recorded["classifier"]["sha256"] == sha256_file(models["classifier"])
    assert recorded["classifier"]["model"]["feature_dim"] == FEATURE_DIM
    assert path == tmp_path / "inverter.safetensors"


def test_config_round_trips_and_the_checkpoint_rebuilds_alone(models, tmp_path: Path) -> None:
    gan, classifier = tmp_path / "gan.safetensors", tmp_path / "classifier.safetensors"
    shutil.copy(models["gan"], gan)
    shutil.copy(models["classifier"], classifier)
    path, trained = fit_inverter(classifier_inverter(gan, classifier, steps=5), tmp_path / "run", quiet=True)
    written = config_from_dict(json.loads((tmp_path / "run" / "config.json").read_text()), expected=InverterConfig)
    assert config_from_dict(json.loads(json.dumps(to_dict(written))), expected=InverterConfig) == written
    assert isinstance(written.features.classifier, ClassifierSource) and written.features.classifier.model is not None
    x = load_gan_split(read_gan_config(gan), "test").batch(torch.arange(32))
    expected = infer_latents(trained, x)

    gan.unlink()  # the inverter checkpoint alone: the GAN's config, the classifier's architecture and weights
    classifier.unlink()
    inverter, loaded = load_inverter_module(path)
    assert loaded == written
    assert isinstance(inverter.features, ClassifierFeatures) and inverter.connection_network.cfg.in_dim == FEATURE_DIM
    assert not inverter.training and not any(p.requires_grad for p in inverter.parameters())
    assert torch.equal(inverter(x), expected)


def test_a_discriminator_config_of_before_still_loads() -> None:
    """Configs written before `network` existed (every inverter checkpoint so far) load as discriminator features."""
    features = from_dict(FeatureExtractorConfig, {"taps": ["actv7-0", "last"], "pool_size": 7})
    assert features == FeatureExtractorConfig(("actv7-0", "last"), 7, "discriminator", None)
    assert not features.uses_classifier


def test_taps_pooling_and_encoders_are_refused_with_the_classifier(models, tmp_path: Path) -> None:
    run, gan, classifier = tmp_path / "run", models["gan"], models["classifier"]
    source = ClassifierSource(str(classifier))
    with_taps = FeatureExtractorConfig(("actv7-0", "last"), network="classifier", classifier=source)
    with pytest.raises(ValueError, match=r"taps \['actv7-0', 'last'\] are discriminator feature maps.*no taps"):
        train_inverter(classifier_inverter(gan, classifier, features=with_taps), run)
    pooled = FeatureExtractorConfig((), 7, network="classifier", classifier=source)
    with pytest.raises(ValueError, match="pool size 7 pools discriminator taps.*nothing to pool"):
        train_inverter(classifier_inverter(gan, classifier, features=pooled), run)
    with pytest.raises(ValueError, match="method must be one of dfi, dfi_image .frozen features.; enc_latent"):
        train_inverter(classifier_inverter(gan, classifier, method="enc_latent"), run)
    with pytest.raises(ValueError, match="needs a classifier checkpoint"):
        train_inverter(classifier_inverter(gan, classifier, features=FeatureExtractorConfig((), network="classifier")),
                       run)  # fmt: skip
    with pytest.raises(ValueError, match="features.network must be one of discriminator, classifier; got 'vgg16'"):
        train_inverter(classifier_inverter(gan, classifier, features=FeatureExtractorConfig(network="vgg16")), run)
    with pytest.raises(FileNotFoundError, match="classifier checkpoint .*missing.safetensors does not exist"):
        train_inverter(classifier_inverter(gan, tmp_path / "missing.safetensors"), run)
    wrong_shape = ClassifierSource(str(classifier), model=ClassifierConfig((3, 32, 32), 10, width=8))
    with pytest.raises(ValueError, match=r"takes images \(3, 32, 32\), but the GAN's are \(1, 28, 28\)"):
        train_inverter(classifier_inverter(gan, classifier, features=FeatureExtractorConfig(
            (), network="classifier", classifier=wrong_shape)), run)  # fmt: skip
    assert not run.exists()  # every refusal comes before any work


def test_cli_trains_records_the_classifier_and_refuses_taps(models, tmp_path: Path) -> None:
    classifier = tmp_path / "classifier.safetensors"
    shutil.copy(models["classifier"], classifier)
    base = ["train", "inverter", "--gan", str(models["gan"]), "--steps", "3", "--hidden", "128", "--batch-size", "16",
            "--log-every", "1", "--device", "cpu"]  # fmt: skip
    run = tmp_path / "inv"
    for extra, message in [
        (["--taps", "actv7-0,last", "--pool-size", "7"], "with --feature-network classifier CN's input is the"),
        (["--pool-size", "2"], "which have no taps and nothing to pool: leave both out"),
    ]:
        result = runner.invoke(app, [*base, "--feature-network", "classifier", "--feature-classifier", str(classifier),
                                     *extra, "--run-dir", str(run)])  # fmt: skip
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output and not run.exists()
    result = runner.invoke(app, [*base, "--feature-network", "classifier", "--run-dir", str(run)])
    assert result.exit_code == 2 and "needs --feature-classifier CKPT" in result.output and not run.exists()
    result = runner.invoke(app, [*base, "--feature-classifier", str(classifier), "--run-dir", str(run)])
    assert result.exit_code == 2 and "needs --feature-network classifier" in result.output and not run.exists()

    command = [*base, "--feature-network", "classifier", "--feature-classifier", str(classifier), "--run-dir", str(run)]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["features"]["classifier"]["checkpoint"] == str(classifier.resolve())  # absolute, with its sha256
    assert config["features"]["classifier"]["sha256"] == sha256_file(classifier)
    assert "--feature-network classifier" in (run / "command.txt").read_text()
    result = runner.invoke(app, command)
    assert result.exit_code == 0 and "already trained by this command" in result.output

    # Other bytes at the classifier's path: CN learnt the features of the old weights, so the folder refuses it.
    shutil.copy(_classifier(tmp_path / "other", seed=1), classifier)
    result = runner.invoke(app, command)
    assert result.exit_code == 2 and "other bytes of the feature classifier" in result.output, result.output
    with pytest.raises(ValueError, match="is not the one this inverter was trained on"):
        open_adapter(config_from_dict(config, expected=InverterConfig))


def test_scored_by_evaluate_inverters_but_no_bundle(models, tmp_path: Path) -> None:
    from training.evaluation.inverters import evaluate_inverters

    path = train_inverter(classifier_inverter(models["gan"], models["classifier"], steps=5), tmp_path / "inv",
                          quiet=True)  # fmt: skip
    inverter, G, D, config = load_inverter(path)  # the study's path: inverter + the GAN it names
    assert config.features.uses_classifier and isinstance(inverter.features, ClassifierFeatures)
    result = evaluate_inverters({"dfi-classifier": path}, models["classifier"], n=10, repeats=2)
    scores = result["table"]["dfi-classifier"]
    assert scores["psnr"]["n"] == 2 and 0 < scores["psnr"]["mean"] < 60
    assert result["rows"]["dfi-classifier"]["taps"] == ""  # no discriminator taps

    with pytest.raises(ValueError, match="discriminator_features.onnx is by definition D\\^f of the GAN's own"):
        build_bundle(None, path, models["classifier"], "tiny", tmp_path / "models", n=4, refine_steps=0)
    assert not (tmp_path / "models").exists()
    result = runner.invoke(app, ["export", "bundle", "--inverter", str(path), "--name", "tiny", "--out",
                                 str(tmp_path / "models")])  # fmt: skip
    assert result.exit_code == 2 and "which a bundle cannot ship" in result.output, result.output
