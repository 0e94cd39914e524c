"""Editing directions for a bundle of a GAN no one here wrote, from a labelled image folder (issue 17): a tiny seeded
foreign GAN (tests/training/inversion/foreign_gans.py) → an inverter trained on its in-memory adapter → its bundle;
`export folder-directions` inverts ROOT/<label>/<group>/*.png with the bundle's invert.onnx, writes eq. 9, SVM and
PCA directions into the bundle (listed in the manifest with their sha256), and the service's /edit serves them.
SeFa needs no labels: it is read from the bundle's generator.onnx (G's first Linear on z), and refused by name for a
G that starts with a transposed convolution."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from dfi_core.bundle import edit_bundle, load_bundle
from dfi_core.datasets import load_fashion_mnist
from dfi_core.preprocessing import to_model_range
from service.app import create_app
from tests.service.conftest import make_settings
from tests.training.inversion import foreign_gans
from training.cli.app import app
from training.datasets.config import DataConfig
from training.editing.folder_directions import direction_name, folder_specs
from training.export.bundle import bundle_from_adapter
from training.export.onnx import export_graph
from training.inversion.dfi import InverterConfig, fit_inverter
from training.inversion.torch_code import adapter_from_modules

CLASSES = {"trouser": 1, "bag": 8}  # Fashion-MNIST labels: two classes whose images differ a lot
GROUPS = ("a", "b")  # sub-folders: eq. 9's groups
# Images per (label, group): unequal within bags, so eq. 9's average over groups differs from the pooled means.
SIZES = {("trouser", "a"): 6, ("trouser", "b"): 6, ("bag", "a"): 3, ("bag", "b"): 9}
PER_LABEL = 12
runner = CliRunner()


@pytest.fixture(scope="module")
def foreign_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle of a tiny seeded foreign GAN (mapping-MLP G, sum-pooling D) and a 20-step DFI inverter."""
    root = tmp_path_factory.mktemp("foreign-bundle")
    torch.manual_seed(0)
    adapter = adapter_from_modules(foreign_gans.make_mapping_g(), foreign_gans.make_sum_pool_d(),
                                   data=DataConfig("fashion-mnist"))  # fmt: skip
    config = InverterConfig(steps=20, hidden=128, batch_size=32, log_every=20, sample_every=20, device="cpu")
    _, inverter = fit_inverter(config, root / "dfi", quiet=True, adapter=adapter)
    training = {"commands": [], "seeds": {"inverter": 0}, "checkpoints": []}
    with pytest.MonkeyPatch.context() as patch:
        # The TorchScript exporter: several times faster than dynamo on these graphs, and the graphs' exporter is
        # not what this test is about (training/export's tests are).
        patch.setenv("DFI_ONNX_EXPORTER", "torchscript")
        folder, _ = bundle_from_adapter(inverter, adapter, "mine", root / "models", metrics={}, training=training)
    return folder


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], np.ndarray]]:
    """ROOT/<label>/<group>/*.png from Fashion-MNIST test images, plus a stray image and a broken file; returns the
    folder and the images per (label, group) as [N, 28, 28, 1] uint8."""
    root = tmp_path_factory.mktemp("labelled")
    test = load_fashion_mnist("test")
    chosen: dict[tuple[str, str], np.ndarray] = {}
    for label, index in CLASSES.items():
        of_class = test.images[test.labels == index]
        for group in GROUPS:
            images, of_class = of_class[: SIZES[(label, group)]], of_class[SIZES[(label, group)] :]
            folder = root / label / group
            folder.mkdir(parents=True)
            for i, image in enumerate(images):
                Image.fromarray(image[:, :, 0]).save(folder / f"{i}.png")
            chosen[(label, group)] = images
    Image.fromarray(test.images[0][:, :, 0]).save(root / "stray.png")  # in no label folder: skipped
    (root / "bag" / "a" / "broken.png").write_bytes(b"not a png")  # unreadable: skipped
    return root, chosen


def test_directions_from_a_labelled_folder_are_stored_and_served(foreign_bundle: Path, labelled) -> None:
    root, chosen = labelled
    before = (foreign_bundle / "manifest.json").read_bytes()
    # Bad input is refused before the bundle is touched: a pair must name known labels.
    unknown = runner.invoke(app, ["export", "folder-directions", "--bundle", str(foreign_bundle), "--images",
                                  str(root), "--pairs", "trouser:shoe"])  # fmt: skip
    assert unknown.exit_code == 2 and "['shoe'] that have no folder; the labels: ['bag', 'trouser']" in unknown.output
    assert (foreign_bundle / "manifest.json").read_bytes() == before and not (foreign_bundle / "directions").exists()

    result = runner.invoke(app, ["export", "folder-directions", "--bundle", str(foreign_bundle), "--images",
                                 str(root), "--pairs", "trouser:bag", "--components", "2", "--kinds",
                                 "eq9,svm,pca,sefa"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"24 images, bag {PER_LABEL}, trouser {PER_LABEL}" in result.output
    assert "skipped 2 file(s)" in result.output
    assert "SeFa: A = Gemm '" in result.output, result.output  # the mapping MLP's first Linear, from generator.onnx

    bundle = load_bundle(foreign_bundle)  # verifies every file's sha256 and that no file is unlisted
    directions = bundle.manifest.directions
    assert set(directions) == {"bag", "trouser", "trouser_to_bag", "svm_bag", "svm_trouser", "svm_trouser_to_bag",
                               "pca_0", "pca_1", "sefa_0", "sefa_1"}  # fmt: skip
    for name, direction in directions.items():
        path = foreign_bundle / direction.file
        assert bundle.manifest.files[direction.file] == hashlib.sha256(path.read_bytes()).hexdigest(), name
    assert directions["bag"].counts == {"with": PER_LABEL, "without": PER_LABEL, "groups": 2}
    assert "export folder-directions" in bundle.manifest.training.commands[-1]

    # eq. 9 by hand from the bundle's own invert.onnx: per group, mean ẑ of bags − mean ẑ of trousers; then averaged.
    invert = bundle.open_graph("invert", providers=["CPUExecutionProvider"])
    z = {key: invert(to_model_range(images)) for key, images in chosen.items()}
    eq9 = np.mean([z[("bag", g)].mean(0) - z[("trouser", g)].mean(0) for g in GROUPS], axis=0)
    vectors = {name: np.load(foreign_bundle / d.file) for name, d in directions.items()}
    assert vectors["bag"].shape == (foreign_gans.MAPPING_Z,) and vectors["bag"].dtype == np.float32
    np.testing.assert_allclose(vectors["bag"], eq9, atol=1e-5)
    bags, trousers = (np.concatenate([z[(label, g)] for g in GROUPS]) for label in ("bag", "trouser"))
    assert np.abs(vectors["bag"] - (bags.mean(0) - trousers.mean(0))).max() > 1e-4  # not the pooled difference
    np.testing.assert_allclose(vectors["trouser_to_bag"], eq9, atol=1e-5)
    np.testing.assert_allclose(vectors["trouser"], -eq9, atol=1e-5)  # two labels: one against the other
    # SVM: scaled to the eq. 9 norm, pointing to the bag side (bags project further along it than trousers).
    svm = vectors["svm_bag"]
    assert np.linalg.norm(svm) == pytest.approx(np.linalg.norm(eq9), rel=1e-4)
    assert (bags @ svm).mean() > (trousers @ svm).mean()
    # SeFa: the top eigenvectors of WᵀW, W = the mapping G's first Linear (the fixture's G, rebuilt from its seed),
    # scaled to the mean eq. 9 norm (here that of `bag`, `trouser` and `trouser_to_bag`: all ±eq9).
    torch.manual_seed(0)
    weight = foreign_gans.make_mapping_g().mapping[0].weight.detach().double()
    _, eigenvectors = torch.linalg.eigh(weight.T @ weight)
    for i in range(2):
        unit = eigenvectors[:, -1 - i].numpy()
        sefa = vectors[f"sefa_{i}"]
        assert np.linalg.norm(sefa) == pytest.approx(np.linalg.norm(eq9), rel=1e-4)
        assert min(np.abs(sefa / np.linalg.norm(sefa) - s * unit).max() for s in (1, -1)) < 1e-5, i

    settings = make_settings(None, models_dir=foreign_bundle.parent, default_model="mine", models=["mine"])
    with TestClient(create_app(settings)) as client:
        listed = client.get("/models/mine")
        assert listed.status_code == 200, listed.text
        assert {d["name"] for d in listed.json()["directions"]} == set(directions)
        start = z[("trouser", "a")][0]
        edited = client.post("/edit", json={"latents": [start.tolist()], "return_images": False,
                                            "directions": [{"name": "trouser_to_bag", "strength": 1.5},
                                                           {"name": "pca_0", "strength": -1}]})  # fmt: skip
        assert edited.status_code == 200, edited.text
        want = start + 1.5 * vectors["trouser_to_bag"] - vectors["pca_0"]
        np.testing.assert_allclose(edited.json()["results"][0]["latent"], want, atol=1e-5)
        unknown_name = client.post("/edit", json={"latents": [start.tolist()], "directions": [{"name": "shoe"}]})
        assert unknown_name.status_code == 422 and "'svm_bag'" in unknown_name.text


def test_label_names_and_pairs() -> None:
    assert direction_name("Smiling Face!") == "smiling_face" and len(direction_name("x" * 100)) == 60
    with pytest.raises(ValueError, match="gives no direction name"):
        direction_name("???")
    with pytest.raises(ValueError, match="label 'A b' and label 'a_b' both give the direction name 'a_b'"):
        folder_specs(["A b", "a_b"])
    with pytest.raises(ValueError, match="two different labels"):
        folder_specs(["a", "b"], [("a", "a")])
    rows = [{"label": label, "group": ""} for label in ("a", "b", "c")]
    specs = {spec.name: spec for spec in folder_specs([r["label"] for r in rows], [("a", "c")])}
    assert list(specs) == ["a", "b", "c", "a_to_c"]
    assert [specs["b"].with_(r) for r in rows] == [False, True, False]
    assert [specs["b"].without(r) for r in rows] == [True, False, True]  # one label against all the others
    assert [specs["a_to_c"].with_(r) for r in rows] == [False, False, True]  # target …
    assert [specs["a_to_c"].without(r) for r in rows] == [True, False, False]  # … against source


def test_a_folder_needs_two_labels(foreign_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "only" / "0.png")
    result = runner.invoke(app, ["export", "folder-directions", "--bundle", str(foreign_bundle), "--images",
                                 str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2 and "at least two labels" in result.output and "only ['only']" in result.output
    assert json.loads((foreign_bundle / "manifest.json").read_text())["name"] == "mine"


class ConvFirstG(torch.nn.Module):
    """DCGAN-style: z as a [N, |z|, 1, 1] map into one transposed convolution to 28×28 (no Linear on z)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(foreign_gans.MAPPING_Z, 1, 28)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(z.view(-1, foreign_gans.MAPPING_Z, 1, 1)))


def test_sefa_is_refused_for_a_generator_that_starts_with_a_conv(foreign_bundle: Path, labelled, tmp_path: Path
                                                                 ) -> None:  # fmt: skip
    """The bundle's generator.onnx swapped for a conv-first G (its manifest re-hashed): `--kinds sefa` says which op
    G starts with, before the bundle is touched."""
    copy = shutil.copytree(foreign_bundle, tmp_path / "conv-g")
    graph = export_graph(ConvFirstG(), torch.randn(2, foreign_gans.MAPPING_Z), tmp_path / "g.onnx", "z", "image",
                         exporter="torchscript")  # fmt: skip
    with edit_bundle(copy) as edit:
        edit.set_directions({})  # whatever the other test stored: not needed here
        shutil.rmtree(copy / "directions", ignore_errors=True)
        edit.add_file(graph, "generator.onnx")
    before = (copy / "manifest.json").read_bytes()
    result = runner.invoke(app, ["export", "folder-directions", "--bundle", str(copy), "--images", str(labelled[0]),
                                 "--kinds", "eq9,sefa"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "SeFa needs G's first layer on z to be a Linear (Gemm/MatMul)" in result.output
    assert "starts with ConvTranspose '/up/ConvTranspose' after Reshape" in result.output, result.output
    assert (copy / "manifest.json").read_bytes() == before and not (copy / "directions").exists()
