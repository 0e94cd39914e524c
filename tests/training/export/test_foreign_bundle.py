"""A bundle of a GAN this project did not write, built through the GAN adapter and served by the service unchanged.

The tiny G and D below are nothing like the zoo's: G has a mapping MLP before its convolutions and a Sigmoid
output in [0, 1]; D has two outputs (a real/fake logit and an auxiliary class head), and its feature vector D^f is
the input of the real/fake head, a global *sum* pooling (a functional op, no module to hook). The adapter maps G's
[0, 1] onto the [-1, +1] of every graph and back before D (`WithRange` / `RangeMap`), exactly as a user's adapter
does; the inverter is the project's own DFI (eq. 5) on that adapter.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from dfi_core.bundle import load_bundle
from dfi_core.datasets import load_fashion_mnist
from dfi_core.preprocessing import to_model_range, to_uint8
from service.app import create_app
from tests.service.conftest import decode_png, make_settings, png_b64
from training.classifiers.networks import Classifier, ClassifierConfig
from training.cli.app import app
from training.core.checkpoint import save_checkpoint
from training.datasets.config import DataConfig
from training.evaluation.samples import score_inversion
from training.export.bundle import build_bundle, bundle_from_adapter, bundle_parity, measure
from training.export.onnx import latent_prior
from training.inversion.adapter import (
    TARGET_RANGE,
    GANAdapter,
    GANSource,
    ImageContract,
    LatentContract,
    RangeMap,
    WithRange,
)
from training.inversion.dfi import (
    InverterConfig,
    adapter_record,
    build_inverter,
    fit_inverter,
    latent_loss,
    load_adapter_split,
)

Z = 8
SHAPE = (1, 28, 28)
CPU = ["CPUExecutionProvider"]


class MappedGenerator(nn.Module):
    """z → mapping MLP → 8×7×7 → two transposed convolutions (batch norm between) → Sigmoid: images in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.mapping = nn.Sequential(nn.Linear(Z, 32), nn.LeakyReLU(0.2), nn.Linear(32, 8 * 7 * 7))
        self.body = nn.Sequential(nn.ConvTranspose2d(8, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Sigmoid())  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.mapping(z).view(-1, 8, 7, 7))


class TwoHeadDiscriminator(nn.Module):
    """[0, 1] images → (real/fake logit, 10 class logits); both heads read the global sum of the last feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1),
                                   nn.LeakyReLU(0.2))  # fmt: skip
        self.real_fake, self.classes = nn.Linear(16, 1), nn.Linear(16, 10)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.pooled(x)
        return self.real_fake(h), self.classes(h)


class SumPooledFeatures(nn.Module):
    """D^f: the input of D's real/fake Linear head."""

    def __init__(self, D: TwoHeadDiscriminator) -> None:
        super().__init__()
        self.D = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.D.pooled(x)


def make_adapter() -> GANAdapter:
    torch.manual_seed(0)
    G, D = MappedGenerator(), TwoHeadDiscriminator()
    with torch.no_grad():  # a few train-mode passes: batch-norm statistics away from their init values
        for _ in range(3):
            G(torch.randn(32, Z))
    value_range = (0.0, 1.0)
    generator = WithRange(G, after=RangeMap(value_range, TARGET_RANGE)).eval().requires_grad_(False)
    features = WithRange(SumPooledFeatures(D), before=RangeMap(TARGET_RANGE, value_range)).eval().requires_grad_(False)
    return GANAdapter(latent=LatentContract(Z), image=ImageContract(SHAPE, value_range), generator=generator,
                      features=features, data=DataConfig("fashion-mnist"),
                      source={"kind": "torch", "generator": f"{__file__}:MappedGenerator"})  # fmt: skip


def train_dfi(adapter: GANAdapter, folder: Path, steps: int = 60) -> tuple[nn.Module, Path]:
    """The DFI inverter (eq. 5) on the adapter, trained as `fit_inverter` does, and its checkpoint."""
    source = GANSource("torch", f"{__file__}:MappedGenerator", f"{__file__}:TwoHeadDiscriminator", z_dim=Z,
                       value_range=(0.0, 1.0))  # fmt: skip
    config = InverterConfig(hidden=128, steps=steps, source=source, data=adapter.data, device="cpu")
    torch.manual_seed(0)
    inverter = build_inverter(config, adapter)
    optimizer = torch.optim.Adam([p for p in inverter.parameters() if p.requires_grad], lr=config.lr)
    rng = torch.Generator().manual_seed(0)
    inverter.train()
    for _ in range(steps):
        z = adapter.sample_z(64, rng)
        with torch.no_grad():
            x = adapter.generator(z)
        loss = latent_loss(inverter(x), z)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    inverter.eval()
    path = save_checkpoint(folder / "inverter.safetensors", {"inverter": inverter}, {}, asdict(config), steps,
                           extra=adapter_record(adapter))  # fmt: skip
    return inverter, path


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> tuple[GANAdapter, nn.Module, Path, dict]:
    tmp = tmp_path_factory.mktemp("foreign")
    adapter = make_adapter()
    inverter, checkpoint = train_dfi(adapter, tmp / "dfi")
    metrics = measure(inverter, adapter, n=20, refine_steps=2)
    training = {"commands": [], "seeds": {"inverter": 0}, "checkpoints": []}
    folder, written = bundle_from_adapter(inverter, adapter, "mine", tmp / "models", metrics=metrics,
                                          training=training, inverter_checkpoint=checkpoint)  # fmt: skip
    return adapter, inverter, folder, written


def test_the_bundle_verifies_without_refinement_weights_and_records_the_adapter(foreign) -> None:
    adapter, _, folder, metrics = foreign
    bundle = load_bundle(folder)
    manifest = bundle.manifest
    assert manifest.refinement is None and not (folder / "generator.safetensors").exists()  # refines via onnx2torch
    assert {"invert.onnx", "generator.onnx", "discriminator_features.onnx", "inverter.safetensors"} <= set(
        manifest.files
    )
    assert manifest.image.shape == SHAPE and manifest.image.value_range == (-1.0, 1.0)
    assert manifest.latent.size == Z and manifest.latent.prior.distribution == "normal"
    record = manifest.training.gan_config["gan_adapter"]
    assert record["image"]["value_range"] == [0.0, 1.0] and record["latent"] == {"size": Z, "prior": "normal"}
    assert manifest.dataset.name == "fashion-mnist" and manifest.graphs.classifier is None
    assert manifest.exporter.shared_weights.get("invert.onnx") == "inverter.safetensors"  # CN stored once
    assert max(metrics["onnx_parity_max_abs_error"].values()) <= 1e-4
    assert metrics["test_images"] == 20 and "class_consistency" not in metrics["dfi"]
    assert "no classifier" in metrics["notes"] and metrics["classifier"] is None
    assert 0 < metrics["dfi"]["psnr"] < 60 and metrics["dfi_opt"]["psnr"] > metrics["dfi"]["psnr"]  # eq. 2 helps


def test_onnx_runtime_inverts_a_test_image_as_torch_does(foreign) -> None:
    adapter, inverter, folder, _ = foreign
    bundle = load_bundle(folder)
    x = to_model_range(load_fashion_mnist("test").images[:3])
    z = bundle.open_graph("invert", providers=CPU)(x)
    recon = bundle.open_graph("generator", providers=CPU)(z)
    with torch.no_grad():
        z_torch = inverter(torch.from_numpy(x))
        recon_torch = adapter.generator(z_torch).numpy()
    np.testing.assert_allclose(z, z_torch.numpy(), atol=1e-4)
    np.testing.assert_allclose(recon, recon_torch, atol=1e-4)
    assert recon.min() >= -1 and recon.max() <= 1 and recon.std() > 0.01  # G's [0, 1] mapped onto [-1, +1]


def test_the_service_serves_the_bundle_unchanged(foreign) -> None:
    adapter, _, folder, _ = foreign
    image = load_fashion_mnist("test").images[5]
    settings = make_settings(None, models_dir=folder.parent, default_model="mine")
    with TestClient(create_app(settings)) as client:
        inverted = client.post("/invert", json={"images": [png_b64(image)]})
        assert inverted.status_code == 200, inverted.text
        result = inverted.json()["results"][0]
        assert result["method"] == "dfi" and decode_png(result["reconstruction_png"]).shape == (28, 28, 1)
        z = np.array(result["latent"], dtype=np.float32)
        expected = load_bundle(folder).open_graph("invert", providers=CPU)(to_model_range(image[None]))[0]
        np.testing.assert_allclose(z, expected, atol=1e-5)

        vector = np.linspace(-1, 1, Z).astype(np.float32)
        edited = client.post("/edit", json={"latents": [z.tolist()], "vector": vector.tolist(), "vector_strength": 0.5})
        assert edited.status_code == 200, edited.text
        body = edited.json()["results"][0]
        np.testing.assert_allclose(body["latent"], z + 0.5 * vector, atol=1e-5)
        with torch.no_grad():
            want = to_uint8(adapter.generator(torch.from_numpy(z + 0.5 * vector)[None]).numpy())[0]
        assert np.abs(decode_png(body["image_png"]).astype(int) - want.astype(int)).max() <= 1


def test_scores_without_a_classifier_are_those_of_score_inversion(foreign) -> None:
    adapter, inverter, _, metrics = foreign
    torch.manual_seed(0)
    judge = Classifier(ClassifierConfig(SHAPE, 10, width=8)).eval()  # any classifier: only psnr / ssim compared
    test = load_adapter_split(adapter, "test")
    full = score_inversion(inverter, adapter.generator, judge, test, n=20, refine_steps=2)
    assert metrics["dfi"]["psnr"] == round(full["psnr"]["mean"], 4)
    assert metrics["dfi"]["ssim_std"] == round(full["ssim"]["std"], 4)
    assert metrics["dfi_opt"]["psnr"] == round(full["refined"]["psnr"]["mean"], 4)


def test_gan_option_and_a_uniform_prior_are_refused_by_name(foreign, tmp_path: Path) -> None:
    _, _, folder, _ = foreign
    with pytest.raises(ValueError, match="leave --gan out"):
        build_bundle(Path("zoo.safetensors"), folder / "inverter.safetensors", None, "again", tmp_path)
    assert latent_prior(LatentContract(Z)) == {"distribution": "normal", "mean": 0.0, "std": 1.0}
    with pytest.raises(ValueError, match="normal prior"):  # dfi_core.bundle.LatentPrior knows only N(0, I)
        latent_prior(LatentContract(Z, "uniform"))


def test_export_bundle_command_from_a_torch_code_checkpoint_alone(tmp_path: Path) -> None:
    """The whole path a user takes: factories + weights files → `train inverter`'s fit → `export bundle` with only
    --inverter (no --gan, no --classifier) → a bundle whose parity is re-checked from its own files and the source."""
    torch.manual_seed(1)
    weights = {"G": tmp_path / "g.safetensors", "D": tmp_path / "d.safetensors"}
    for key, module in (("G", MappedGenerator()), ("D", TwoHeadDiscriminator())):
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights[key]))
    source = GANSource("torch", f"{__file__}:MappedGenerator", f"{__file__}:TwoHeadDiscriminator",
                       generator_weights=str(weights["G"]), discriminator_weights=str(weights["D"]),
                       features=("real_fake:input",))  # fmt: skip
    config = InverterConfig(source=source, data=DataConfig("fashion-mnist"), hidden=128, steps=10, log_every=10,
                            sample_every=10, device="cpu")  # fmt: skip
    checkpoint, _ = fit_inverter(config, tmp_path / "dfi", quiet=True)
    result = CliRunner().invoke(app, ["export", "bundle", "--inverter", str(checkpoint), "--name", "mine", "--out",
                                      str(tmp_path / "models"), "--n", "8", "--refine-steps", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = load_bundle(tmp_path / "models" / "mine").manifest
    assert manifest.refinement is None and manifest.training.checkpoints == ["inverter.safetensors"]
    recorded = manifest.training.gan_config["gan_adapter"]["source"]
    assert recorded["generator_weights"] == str(weights["G"]) and recorded["features"] == ["real_fake:input"]
    assert manifest.training.seeds == {"inverter": 0} and manifest.metrics["dfi_opt"]["steps"] == 1
    assert max(bundle_parity(tmp_path / "models" / "mine", n=8, batch_sizes=(1, 8)).values()) <= 1e-4
