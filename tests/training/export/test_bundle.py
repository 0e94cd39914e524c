"""End to end on tiny models: GAN → DFI inverter → measured, exported, parity-checked bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dfi_core.bundle import BundleError, load_bundle
from training.classifiers.classifier import train_classifier
from training.classifiers.config import ClassifierTrainConfig
from training.classifiers.networks import ClassifierConfig
from training.datasets.config import DataConfig
from training.export.bundle import build_bundle
from training.gan.config import gan_config
from training.gan.train import train_gan
from training.inversion.dfi import InverterConfig, train_inverter
from training.inversion.networks import FeatureExtractorConfig


@pytest.mark.parametrize("loss", ["dcgan", "sngan"])
def test_bundle_from_checkpoints(loss: str, tmp_path: Path) -> None:
    gan = gan_config(DataConfig("fashion-mnist"), (1, 28, 28), loss, z_dim=8, g_width=8, d_width=8, feature_dim=16,
                     steps=2, batch_size=16, sample_every=2, checkpoint_every=2, device="cpu")  # fmt: skip
    gan_ckpt = train_gan(gan, tmp_path / "gan", quiet=True)
    inverter = InverterConfig(str(gan_ckpt), features=FeatureExtractorConfig(("actv7-0", "last"), 4), hidden=128,
                              steps=5, sample_every=5, device="cpu")  # fmt: skip
    inv_ckpt = train_inverter(inverter, tmp_path / "dfi", quiet=True)
    classifier = ClassifierTrainConfig(DataConfig("fashion-mnist"), ClassifierConfig((1, 28, 28), 10, width=8),
                                       steps=5, batch_size=16, device="cpu")  # fmt: skip
    cls_ckpt, _ = train_classifier(classifier, tmp_path / "cls", quiet=True)

    folder, metrics = build_bundle(gan_ckpt, inv_ckpt, cls_ckpt, "tiny", tmp_path / "models", n=20, refine_steps=2)
    bundle = load_bundle(folder)
    assert bundle.manifest.metrics["test_images"] == 20
    dfi, opt = metrics["dfi"], metrics["dfi_opt"]
    assert 0 < dfi["psnr"] < 60 and -1 <= dfi["ssim"] <= 1 and 0 <= dfi["class_consistency"] <= 1
    assert opt["psnr"] > dfi["psnr"]  # two Adam steps of eq. 2 already lower ‖G(z) − x‖²
    assert max(metrics["onnx_parity_max_abs_error"].values()) <= 1e-4
    assert bundle.manifest.latent.size == 8 and bundle.manifest.image.channels == 1
    assert bundle.manifest.training.seeds == {"gan": 0, "inverter": 0}
    from training.export.bundle import bundle_parity

    assert max(bundle_parity(folder, n=8, batch_sizes=(1, 8)).values()) <= 1e-4  # rebuilt from the bundle alone

    with pytest.raises(FileExistsError):
        build_bundle(gan_ckpt, inv_ckpt, cls_ckpt, "tiny", tmp_path / "models", n=4, refine_steps=0)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["metrics"]["dfi"]["psnr"] = 99.0  # metrics are not hashed, but the graphs are
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "invert.onnx").write_bytes((folder / "invert.onnx").read_bytes()[:-1] + b"\x00")
    with pytest.raises(BundleError, match="invert.onnx"):
        load_bundle(folder)
