"""DFI for GANs no one here wrote (issue 17, "Torch code"): tiny foreign architectures (foreign_gans.py) through
factories, weights files, D^f taps and read contracts — end to end through the CLI, rebuilt from the checkpoint,
exported to ONNX — and every bad input ending in an error that names the thing and the fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from tests.training.inversion import foreign_gans
from training.cli.app import app
from training.core.config import config_from_dict
from training.datasets import load_dataset
from training.datasets.config import DataConfig
from training.export.onnx import export_graph
from training.inversion.adapter import GANSource
from training.inversion.dfi import (
    InverterConfig,
    build_inverter,
    fit_inverter,
    load_inverter_adapter,
    load_inverter_module,
)
from training.inversion.torch_code import TorchCodeError, adapter_from_modules, open_torch_adapter

FOREIGN = Path(foreign_gans.__file__)
MODULE = "tests.training.inversion.foreign_gans"
runner = CliRunner()


def at(factory: str) -> str:
    """The factory as the CLI takes a user's file: path/to/gan.py:FACTORY."""
    return f"{FOREIGN}:{factory}"


def torch_source(generator: str, discriminator: str = "make_sum_pool_d", **fields) -> GANSource:
    return GANSource(kind="torch", generator=at(generator), discriminator=at(discriminator), **fields)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Weights unlike any factory's own initialisation: G as safetensors, D as a torch.save state dict."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(123)
    G, D = foreign_gans.make_mapping_g(), foreign_gans.make_sum_pool_d()
    save_file(G.state_dict(), str(root / "G.safetensors"))
    torch.save(D.state_dict(), root / "D.pt")
    torch.save(D, root / "D-whole.pt")  # a whole pickled module
    return {"G": root / "G.safetensors", "D": root / "D.pt", "D-whole": root / "D-whole.pt"}


def first_test_images(n: int = 8) -> torch.Tensor:
    return load_dataset("fashion-mnist", "test").batch(torch.arange(n), torch.device("cpu"))


def tiny(source: GANSource, method: str = "dfi") -> InverterConfig:
    return InverterConfig(source=source, data=DataConfig("fashion-mnist"), method=method, steps=3, hidden=128,
                          batch_size=16, log_every=1, sample_every=3, device="cpu")  # fmt: skip


def train_args(generator: str, run: Path, *extra: str) -> list[str]:
    return ["train", "inverter", "--generator", generator, "--discriminator", at("make_sum_pool_d"), "--data",
            "fashion-mnist", "--steps", "3", "--hidden", "128", "--batch-size", "16", "--log-every", "1",
            "--device", "cpu", "--run-dir", str(run), *extra]  # fmt: skip


def test_cli_trains_a_foreign_gan_and_its_checkpoint_rebuilds_it(weights, tmp_path: Path, capsys) -> None:
    run = tmp_path / "cli"
    result = runner.invoke(app, train_args(at("make_mapping_g"), run, "--generator-weights", str(weights["G"]),
                                           "--discriminator-weights", str(weights["D"])))  # fmt: skip
    assert result.exit_code == 0, result.output
    # D^f defaults to the input of D's last Linear (after a functional sum pooling), said and recorded.
    assert "D^f: the input of D's last Linear layer 'head'" in result.output + capsys.readouterr().out
    written = json.loads((run / "config.json").read_text())
    assert written["source"]["features"] == ["head:input"]
    assert written["source"]["z_dim"] == foreign_gans.MAPPING_Z  # read from the mapping MLP's first Linear
    assert written["source"]["value_range"] == [-1.0, 1.0]  # its final Tanh
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [0, 1, 2, 3]

    # The checkpoint alone rebuilds the GAN with the weights files (not the factories' initialisation) ...
    inverter, adapter, config = load_inverter_adapter(run / "inverter.safetensors")
    assert config.source is not None and config.source.features == ("head:input",)
    G = foreign_gans.make_mapping_g()
    G.load_state_dict(load_file(str(weights["G"])))
    z = torch.randn(4, foreign_gans.MAPPING_Z)
    assert torch.equal(adapter.generator(z), G.eval()(z))
    # ... and its recorded config trains the very same inverter again, whose reload gives the trained module's ẑ.
    path, trained = fit_inverter(config_from_dict(written, expected=InverterConfig), tmp_path / "again", quiet=True)
    x = first_test_images()
    reloaded, _, _ = load_inverter_adapter(path)
    assert torch.equal(reloaded(x), trained(x))
    assert torch.allclose(inverter(x), trained(x), atol=1e-6)


def test_sigmoid_dcgan_style_g_and_two_output_d(tmp_path: Path) -> None:
    """A [0, 1] G that takes z as a 1×1 map, its |z| an attribute; a D returning (logit, class logits), tapped at
    two named places; trained as enc_latent (D's factory again, fresh and trainable) and rebuilt."""
    source = GANSource(kind="torch", generator=f"{MODULE}:make_sigmoid_g", discriminator=at("make_two_head_d"),
                       features=("trunk", "conv.0:input"))  # fmt: skip
    adapter = open_torch_adapter(source, DataConfig("fashion-mnist"))
    assert adapter.latent.size == foreign_gans.SIGMOID_Z and adapter.image.shape == (1, 28, 28)
    assert adapter.image.value_range == (0.0, 1.0) and source.value_range == (0.0, 1.0)  # the source is filled in
    raw_G = adapter.generator.module.generator
    z = torch.randn(5, foreign_gans.SIGMOID_Z)
    assert torch.allclose(adapter.generator(z), raw_G(z[:, :, None, None]) * 2 - 1)  # images in [-1, +1]
    x = first_test_images(5)
    features = adapter.features(x)
    assert features.shape == (5, 32 + 4 * 4) == (5, adapter.feature_dim)  # 4-D taps pooled to R × R = 4 × 4
    # D's input is G's range: the tap "conv.0:input" sees the image mapped back to [0, 1].
    pooled = torch.nn.functional.adaptive_avg_pool2d((x + 1) / 2, 4)
    assert torch.allclose(features[:, 32:], pooled.flatten(1), atol=1e-6)
    assert not any(p.requires_grad for p in adapter.features.parameters()) and not adapter.features.training

    fresh = adapter.fresh_features()
    assert fresh.training and all(p.requires_grad for p in fresh.parameters())
    assert not torch.equal(fresh(x), features)
    path, trained = fit_inverter(tiny(source, "enc_latent"), tmp_path / "enc", quiet=True)
    reloaded, _, config = load_inverter_adapter(path)
    assert config.source is not None and config.source.z_dim == foreign_gans.SIGMOID_Z
    assert torch.equal(reloaded(x), trained(x))


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize(("make_g", "make_d", "features"), [
    ("make_mapping_g", "make_sum_pool_d", None),
    ("make_sigmoid_g", "make_two_head_d", "trunk,conv.0"),  # conv.0: 4×14×14, pooled to a non-dividing 4×4
])  # fmt: skip
def test_python_api_graphs_export_to_onnx(make_g: str, make_d: str, features: str | None, tmp_path: Path) -> None:
    """The bundle exporter's path: D^f (hooks, early stop, R × R pooling) and G (range map, 1×1 map input) traced to
    ONNX (opset 17, dynamic batch) agree with ONNX Runtime on another batch size; D stops at its last tap."""
    adapter = adapter_from_modules(getattr(foreign_gans, make_g)(), getattr(foreign_gans, make_d)(), features)
    x, z = first_test_images(5), torch.randn(5, adapter.latent.size)
    d_path = export_graph(adapter.features, x[:2], tmp_path / "d.onnx", "image", "features")
    g_path = export_graph(adapter.generator, z[:2], tmp_path / "g.onnx", "z", "image")
    with torch.no_grad():
        assert np.abs(run_onnx(d_path, x) - adapter.features(x).numpy()).max() <= 1e-4
        assert np.abs(run_onnx(g_path, z) - adapter.generator(z).numpy()).max() <= 1e-4
    # D stops right after its last tap: its heads never run (ONNX would prune unused outputs anyway; torch does not).
    heads = [m for name, m in adapter.features.module.discriminator.named_modules() if name in ("head", "classes")]
    ran: list[str] = []
    handles = [m.register_forward_hook(lambda *_: ran.append("head")) for m in heads]
    adapter.features(x)
    for handle in handles:
        handle.remove()
    assert heads and not ran


def test_value_range_measured_given_or_asked_for() -> None:
    measured = adapter_from_modules(foreign_gans.make_functional_tanh_g(), foreign_gans.make_sum_pool_d())
    assert measured.image.value_range == (-1.0, 1.0) and measured.latent.size == 4  # G.nz
    with pytest.raises(TorchCodeError, match=r"span \[.*within neither \[0, 1\] nor \[-1, 1\]; pass --value-range"):
        adapter_from_modules(foreign_gans.make_unbounded_g(), foreign_gans.make_sum_pool_d())
    with pytest.raises(TorchCodeError, match="pass discriminator_factory= to adapter_from_modules"):
        measured.fresh_features()  # a module alone cannot be freshly initialised
    given = adapter_from_modules(foreign_gans.make_unbounded_g(), foreign_gans.make_sum_pool_d(), value_range=(2, 4),
                                 discriminator_factory=foreign_gans.make_sum_pool_d)  # fmt: skip
    assert given.fresh_features()(first_test_images(2)).shape == (2, 16)
    z = torch.randn(3, 4)
    raw = given.generator.module(z)
    assert given.image.value_range == (2.0, 4.0) and torch.allclose(given.generator(z), raw - 3)


def test_weights_pickles_and_mismatches(weights) -> None:
    with pytest.raises(TorchCodeError, match="pickles Python objects.*--trust-pickle"):
        open_torch_adapter(torch_source("make_mapping_g", discriminator_weights=str(weights["D-whole"])))
    trusted = open_torch_adapter(torch_source("make_mapping_g", discriminator_weights=str(weights["D-whole"]),
                                              trust_pickle=True))  # fmt: skip
    plain = open_torch_adapter(torch_source("make_mapping_g", discriminator_weights=str(weights["D"])))
    x = first_test_images(4)
    assert torch.equal(trusted.features(x), plain.features(x))
    misfit = r"--generator-weights .* does not fit G.*missing keys \(\d+\): \['mapping.0.bias'.*unexpected keys"
    with pytest.raises(TorchCodeError, match=misfit + r" \(\d+\): \['body.0.bias'"):
        open_torch_adapter(torch_source("make_mapping_g", generator_weights=str(weights["D"])))
    with pytest.raises(FileNotFoundError, match="--discriminator-weights: the file .*nope.pt does not exist"):
        open_torch_adapter(torch_source("make_mapping_g", discriminator_weights=str(weights["D"].with_name("nope.pt"))))


def test_bad_code_errors_name_the_thing_and_the_fix(tmp_path: Path) -> None:
    broken = tmp_path / "broken_gan.py"
    broken.write_text("import surely_not_installed_pkg\n\ndef make_g():\n    return None\n")
    cases = {
        "cannot import module 'surely_not_a_module'.*No module named 'surely_not_a_module'":
            dict(generator="surely_not_a_module:make_g"),
        "importing .*broken_gan.py failed: ModuleNotFoundError: No module named 'surely_not_installed_pkg'":
            dict(generator=f"{broken}:make_g"),
        "--generator takes MODULE:FACTORY or path/to/gan.py:FACTORY, got 'gan.py'": dict(generator="gan.py"),
        "has no factory 'make_gg'; its callables: .*make_mapping_g": dict(generator=at("make_gg")),
        "--discriminator .*make_not_a_module: the factory returned a dict, not a torch.nn.Module":
            dict(discriminator=at("make_not_a_module")),
        r"G's output is not an image batch: got shape \[2, 784\]": dict(generator=at("make_flat_g")),
        "cannot tell G's latent size.*pass --z-dim": dict(generator=at("make_no_latent_hint_g")),
        "--features: D has no module 'nope'; D's modules: body, body.0, body.1": dict(features=("nope",)),
        "--features: 'body.0:inptu' is not NAME, NAME:input or NAME:output": dict(features=("body.0:inptu",)),
    }  # fmt: skip
    for message, fields in cases.items():
        source = torch_source("make_mapping_g")
        for name, value in fields.items():
            setattr(source, name, value)
        with pytest.raises(TorchCodeError, match=message):
            open_torch_adapter(source)
    assert issubclass(TorchCodeError, ValueError)  # the CLI's `error: ...`, exit 2
    # the latent size that no attribute or layer tells is given instead
    assert open_torch_adapter(torch_source("make_no_latent_hint_g", z_dim=28 * 28)).latent.size == 28 * 28


def test_cli_errors_are_clean(tmp_path: Path) -> None:
    result = runner.invoke(app, train_args(at("make_g_32"), tmp_path / "a"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "has samples (1, 28, 28) but the GAN's images are (1, 32, 32) (its image contract)" in result.output
    result = runner.invoke(app, train_args("surely_not_a_module:make_g", tmp_path / "b"))
    assert result.exit_code == 2 and "error: --generator: cannot import module 'surely_not_a_module'" in result.output
    assert "No module named 'surely_not_a_module'" in result.output
    result = runner.invoke(app, train_args(at("make_mapping_g"), tmp_path / "c", "--features", "head:input,nope"))
    assert result.exit_code == 2 and "D has no module 'nope'" in result.output


def test_a_bad_features_name_leaves_no_run_folder(weights, tmp_path: Path) -> None:
    run = tmp_path / "typo"
    parts = ["--generator-weights", str(weights["G"]), "--discriminator-weights", str(weights["D"])]
    result = runner.invoke(app, train_args(at("make_mapping_g"), run, *parts, "--features", "haed"))
    assert result.exit_code == 2 and "haed" in result.output, result.output
    assert "Traceback" not in result.output and not run.exists()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_command_again_is_done_and_a_changed_command_or_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Issue 17: the contracts resolve before the run folder is compared, so the identical torch-code command says
    it is done; another command is refused; files are stored absolute with their sha256, and a weights file that
    changed since is refused by name (resume and checkpoint reload alike)."""
    monkeypatch.chdir(tmp_path)  # the weights and the run folder given relative to the working directory
    torch.manual_seed(5)
    save_file(foreign_gans.make_mapping_g().state_dict(), "G.safetensors")
    torch.save(foreign_gans.make_sum_pool_d().state_dict(), "D.pt")
    run = Path("run")
    args = train_args(at("make_mapping_g"), run, "--generator-weights", "G.safetensors", "--discriminator-weights",
                      "D.pt")  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    source = json.loads((run / "config.json").read_text())["source"]
    assert source["generator_weights"] == str(tmp_path.resolve() / "G.safetensors")
    assert source["discriminator_weights"] == str(tmp_path.resolve() / "D.pt")
    assert source["generator"] == f"{FOREIGN.resolve()}:make_mapping_g"
    assert source["sha256"] == {"generator_weights": sha256(tmp_path / "G.safetensors"),
                                "discriminator_weights": sha256(tmp_path / "D.pt")}  # fmt: skip
    checkpoint = run / "inverter.safetensors"
    trained, log = checkpoint.read_bytes(), (run / "log.jsonl").read_text()

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "already trained by this command" in again.output
    assert checkpoint.read_bytes() == trained and (run / "log.jsonl").read_text() == log  # nothing retrained

    for extra, field in ((["--features", "body.0"], "source"), (["--steps", "4"], "steps")):
        changed = runner.invoke(app, [*args, *extra])
        assert changed.exit_code == 2 and f"differs in {field}" in changed.output, changed.output
    assert checkpoint.read_bytes() == trained

    # A run that stopped before its checkpoint is trained again from step 0, its log replaced (not appended to).
    checkpoint.rename(tmp_path / "first.safetensors")
    restarted = runner.invoke(app, args)
    assert restarted.exit_code == 0 and "training it again from step 0" in restarted.output, restarted.output
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    again_weights, first_weights = load_file(str(checkpoint)), load_file(str(tmp_path / "first.safetensors"))
    assert all(torch.equal(again_weights[k], v) for k, v in first_weights.items())  # seeded: the same inverter
    trained = checkpoint.read_bytes()

    torch.manual_seed(6)  # other weights under the same name
    torch.save(foreign_gans.make_sum_pool_d().state_dict(), "D.pt")
    refused = runner.invoke(app, args)
    old = source["sha256"]["discriminator_weights"][:12]
    message = f"--discriminator-weights {tmp_path.resolve() / 'D.pt'} changed (sha256 {old}… then"
    assert refused.exit_code == 2 and message in refused.output, refused.output
    assert "Traceback" not in refused.output and checkpoint.read_bytes() == trained
    with pytest.raises(ValueError, match=r"not those this inverter was trained on: --discriminator-weights .*D\.pt"):
        load_inverter_adapter(checkpoint)


def test_fit_inverter_trains_on_an_adapter_built_in_memory(tmp_path: Path) -> None:
    """The notebook API: modules built in Python → adapter_from_modules → fit_inverter(adapter=...), a run folder
    like the CLI's (source of kind "memory"), and a checkpoint that reopens with that adapter only."""
    torch.manual_seed(2)
    adapter = adapter_from_modules(foreign_gans.make_mapping_g(), foreign_gans.make_sum_pool_d(),
                                   data=DataConfig("fashion-mnist"))  # fmt: skip
    config = InverterConfig(steps=3, hidden=128, batch_size=16, log_every=1, sample_every=3, device="cpu")
    with pytest.raises(ValueError, match="give exactly one GAN"):
        fit_inverter(config, tmp_path / "none", quiet=True)  # no GAN named and none passed in
    path, trained = fit_inverter(config, tmp_path / "notebook", quiet=True, adapter=adapter)
    written = json.loads((tmp_path / "notebook" / "config.json").read_text())
    assert written["source"]["kind"] == "memory" and written["source"]["features"] == ["head:input"]
    assert written["source"]["z_dim"] == foreign_gans.MAPPING_Z and written["data"]["name"] == "fashion-mnist"
    log = [json.loads(line) for line in (tmp_path / "notebook" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3] and all(np.isfinite(r["loss"]) for r in log[1:])

    x = first_test_images(4)
    torch.manual_seed(config.seed)  # fit_inverter's starting point: CN trained away from it, D^f left frozen
    start = build_inverter(config, adapter)
    assert not torch.allclose(start(x), trained(x))
    assert torch.equal(trained.features(x), adapter.features(x))
    with pytest.raises(ValueError, match=r"built in memory .*pass that GAN's adapter"):
        load_inverter_module(path)
    reloaded, _ = load_inverter_module(path, adapter=adapter)
    assert torch.equal(reloaded(x), trained(x))
