"""dfi_core.refinement.load_bundle_generator: a differentiable G for any bundle (generator.onnx via onnx2torch, or
generator.safetensors + the zoo architecture), the parity check at load, and the clear error for an op onnx2torch
cannot convert. Shipped bundles are only read; every changed bundle is a tmp copy."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
if importlib.util.find_spec("onnx2torch") is None:  # find_spec, not import: it would need torchvision
    pytest.skip("onnx2torch is not installed (the `worker` extra)", allow_module_level=True)

from onnx import TensorProto, helper  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from dfi_core.bundle import Bundle, load_bundle, write_manifest  # noqa: E402
from dfi_core.metrics import psnr  # noqa: E402
from dfi_core.preprocessing import to_model_range  # noqa: E402
from dfi_core.refinement import (  # noqa: E402
    PARITY_ATOL,
    ParityError,
    RefinementUnavailable,
    UnsupportedOpError,
    convert_onnx_generator,
    load_bundle_generator,
    refine,
)

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = sorted(p.parent.name for p in MODELS.glob("*/manifest.json"))


def copy_without_safetensors(source: Path, target: Path, name: str | None = None) -> Bundle:
    """A bundle like `source` but with no generator.safetensors and no `refinement` block, as a bundle made from a
    user's own GAN is: generator.onnx gets its weights inside the graph (the shipped one reads them from
    generator.safetensors as ONNX external data), and the manifest is rewritten by `write_manifest`."""
    manifest = load_bundle(source).manifest
    shutil.copytree(source, target)
    graph = onnx.load(str(target / "generator.onnx"))  # resolves the external data; tensors become inline
    (target / "generator.safetensors").unlink()
    onnx.save_model(graph, str(target / "generator.onnx"))
    values = manifest.model_dump(mode="json")
    values["refinement"] = None
    values["exporter"]["shared_weights"].pop("generator.onnx")
    values["name"] = name or values["name"]
    write_manifest(target, values)
    return load_bundle(target)


def add_unsupported_op(folder: Path) -> Bundle:
    """Append Shrink(lambd=0, bias=0) — the identity, which ONNX Runtime runs but onnx2torch 1.5 cannot convert —
    to a bundle's inline generator.onnx, so inversion and G(z) are unchanged and only the conversion fails."""
    graph = onnx.load(str(folder / "generator.onnx"))
    last = next(node for node in graph.graph.node if "image" in node.output)
    last.output[list(last.output).index("image")] = "before_shrink"
    graph.graph.node.append(helper.make_node("Shrink", ["before_shrink"], ["image"], lambd=0.0, bias=0.0))
    onnx.checker.check_model(graph)
    onnx.save_model(graph, str(folder / "generator.onnx"))
    write_manifest(folder, load_bundle(folder, verify=False).manifest)
    return load_bundle(folder)


def _test_images(bundle: Bundle, n: int) -> np.ndarray:
    from dfi_core.datasets import load_split

    try:
        data = load_split(bundle.manifest.dataset.name, "test")
    except (FileNotFoundError, OSError, ValueError) as error:
        pytest.skip(f"{bundle.manifest.dataset.name} test split not available: {error}")
    return to_model_range(data.images[:n])


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request: pytest.FixtureRequest) -> tuple[Bundle, dict]:
    bundle = load_bundle(MODELS / request.param)
    return bundle, {source: load_bundle_generator(bundle, prefer=source) for source in ("onnx2torch", "safetensors")}


def test_onnx2torch_g_matches_the_safetensors_g_and_onnx_runtime(shipped) -> None:
    """Forward to PARITY_ATOL on a batch other than the load check's (float32 kernel order: measured ≤ 6e-6), and
    the gradient refinement follows, d‖G(z)−x‖²/dz, to 1e-4 relative: the two G's run the same float32 weights
    through the same torch kernels, so their gradients differ only by the forward's rounding carried through."""
    bundle, generators = shipped
    z = torch.randn(8, bundle.manifest.latent.size, generator=torch.Generator().manual_seed(123))
    reference = bundle.open_graph("generator", providers=["CPUExecutionProvider"])(z.numpy())
    outputs, grads = {}, {}
    for source, generator in generators.items():
        assert generator.source == source
        w = z.clone().requires_grad_(True)
        out = generator.module(w)
        (grads[source],) = torch.autograd.grad((out - 0.5).pow(2).sum(), [w])
        outputs[source] = out.detach().numpy()
        assert np.abs(outputs[source] - reference).max() <= PARITY_ATOL
    assert np.abs(outputs["onnx2torch"] - outputs["safetensors"]).max() <= PARITY_ATOL
    g_o, g_s = grads["onnx2torch"], grads["safetensors"]
    assert g_o.abs().max() > 0  # gradients reach z through the converted graph
    assert float((g_o - g_s).abs().max() / g_s.abs().max()) <= 1e-4


def test_auto_builds_both_checks_parity_and_keeps_the_faster_safetensors_g(shipped) -> None:
    """Both sources exist for a zoo bundle: both are built and checked, and the safetensors G (faster at batch 1,
    benchmarks/results/refinement_cpu.json) is the one used, so refined latents stay what they were."""
    bundle, generators = shipped
    chosen = load_bundle_generator(bundle)
    assert set(chosen.parity) == {"onnx2torch_vs_onnxruntime", "safetensors_vs_onnxruntime",
                                  "onnx2torch_vs_safetensors"}  # fmt: skip
    assert all(0 <= value <= PARITY_ATOL for value in chosen.parity.values())
    assert chosen.source == "safetensors" and "faster" in chosen.reason and "agrees" in chosen.reason
    assert not chosen.module.training and not any(p.requires_grad for p in chosen.module.parameters())
    z = torch.randn(3, bundle.manifest.latent.size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(chosen(z), generators["safetensors"](z))


def test_refinement_from_the_onnx2torch_g_improves_psnr_like_the_safetensors_g(shipped) -> None:
    """50 Adam steps of eq. 2 from ẑ on 4 real test images: both G's raise the PSNR by the same amount. The two
    forward passes differ by ≤ 6e-6, and Adam's normalised steps carry that into the latents; after 50 steps the
    refined PSNRs measured here differ by ≤ 6e-4 dB (emoji; 6e-7 on Fashion-MNIST). 0.01 dB is ~20× that and
    ~500× below the gain (measured +5.6 dB and +4.8 dB; asserted > 1 dB)."""
    bundle, generators = shipped
    x = _test_images(bundle, 4)
    z0 = bundle.open_graph("invert", providers=["CPUExecutionProvider"])(x)
    before = psnr(bundle.open_graph("generator", providers=["CPUExecutionProvider"])(z0), x)
    refined = {}
    for source, generator in generators.items():
        z, history = refine(generator.module, torch.from_numpy(x), torch.from_numpy(z0), steps=50)
        assert history[-1] < history[0]
        with torch.no_grad():
            refined[source] = psnr(generator.module(z).numpy(), x)
    for source, values in refined.items():
        assert values.mean() > before.mean() + 1.0, (source, values.mean(), before.mean())
    np.testing.assert_allclose(refined["onnx2torch"], refined["safetensors"], atol=0.01)


def test_a_bundle_without_safetensors_is_valid_and_refines_from_generator_onnx(tmp_path: Path) -> None:
    bundle = copy_without_safetensors(MODELS / "fashion-mnist", tmp_path / "b")
    assert bundle.manifest.refinement is None and "generator.safetensors" not in bundle.manifest.files
    assert '"refinement": null' in (tmp_path / "b" / "manifest.json").read_text()
    chosen = load_bundle_generator(bundle)
    assert chosen.source == "onnx2torch" and "no generator.safetensors" in chosen.reason
    assert set(chosen.parity) == {"onnx2torch_vs_onnxruntime"} and chosen.parity["onnx2torch_vs_onnxruntime"] < 1e-4
    with pytest.raises(RefinementUnavailable, match="no generator.safetensors"):
        load_bundle_generator(bundle, prefer="safetensors")


def test_an_unconvertible_op_is_named_and_the_safetensors_g_takes_over(tmp_path: Path) -> None:
    bundle = add_unsupported_op(copy_without_safetensors(MODELS / "fashion-mnist", tmp_path / "b").folder)
    z = np.zeros((2, bundle.manifest.latent.size), np.float32)
    assert bundle.open_graph("generator")(z).shape == (2, 1, 28, 28)  # ONNX Runtime still runs it
    with pytest.raises(UnsupportedOpError, match=r"cannot convert Shrink \(opset 17\)") as caught:
        load_bundle_generator(bundle)
    assert caught.value.ops == ["Shrink (opset 17)"] and "inversion without refinement works" in caught.value.reason
    # With generator.safetensors present (the zoo's architecture), auto falls back to it and says why.
    folder = tmp_path / "with"
    shutil.copytree(MODELS / "fashion-mnist", folder)
    graph = onnx.load(str(folder / "generator.onnx"))
    onnx.save_model(graph, str(folder / "generator.onnx"))  # inline weights, so the graph edit cannot touch them
    values = load_bundle(MODELS / "fashion-mnist").manifest.model_dump(mode="json")
    values["exporter"]["shared_weights"].pop("generator.onnx")
    write_manifest(folder, values)
    chosen = load_bundle_generator(add_unsupported_op(folder))
    assert chosen.source == "safetensors" and "cannot convert Shrink (opset 17)" in chosen.reason
    assert "onnx2torch_vs_onnxruntime" not in chosen.parity
    assert chosen.parity["safetensors_vs_onnxruntime"] <= PARITY_ATOL


def test_a_tiny_graph_with_an_unsupported_op_raises_one_clear_error(tmp_path: Path) -> None:
    """Built with onnx.helper: z [batch, 4] → Mish (opset 18; ONNX Runtime has it, onnx2torch 1.5 does not)."""
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4])
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 2, 2])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 2, 2])
    nodes = [helper.make_node("Mish", ["z"], ["m"]), helper.make_node("Reshape", ["m", "shape"], ["image"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [z], [image], [shape]),
                              opset_imports=[helper.make_opsetid("", 18)])  # fmt: skip
    onnx.checker.check_model(model)
    path = tmp_path / "g.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(UnsupportedOpError, match=r"Mish \(opset 18\)") as caught:
        convert_onnx_generator(path, "tiny")
    assert caught.value.ops == ["Mish (opset 18)"] and str(caught.value).startswith("tiny: onnx2torch")


def test_parity_failure_at_load_names_the_disagreeing_source(tmp_path: Path) -> None:
    """A generator.safetensors whose weights no longer match generator.onnx is refused, not silently used."""
    folder = tmp_path / "b"
    shutil.copytree(MODELS / "fashion-mnist", folder)
    graph = onnx.load(str(folder / "generator.onnx"))
    onnx.save_model(graph, str(folder / "generator.onnx"))  # inline, so changing the safetensors leaves ONNX as is
    path = folder / "generator.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open has no __iter__
    first = next(key for key in tensors if key.endswith("weight") and tensors[key].ndim >= 2)
    tensors[first] = tensors[first] * 1.5
    save_file(tensors, str(path), metadata=metadata)
    values = load_bundle(MODELS / "fashion-mnist").manifest.model_dump(mode="json")
    values["exporter"]["shared_weights"].pop("generator.onnx")
    write_manifest(folder, values)
    with pytest.raises(ParityError, match="safetensors_vs_onnxruntime"):
        load_bundle_generator(load_bundle(folder))


def test_onnx2torch_loads_next_to_a_torchvision_that_does_not(tmp_path: Path) -> None:
    """PyPI's torchvision next to CPU torch fails at import ("operator torchvision::nms does not exist"); onnx2torch
    still loads, refinement still converts, its two detection ops count as unconvertible, and no stand-in
    torchvision is left in sys.modules. A subprocess, so the broken package shadows the real one only there."""
    broken = tmp_path / "torchvision"
    broken.mkdir()
    (broken / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    code = (
        "import sys\n"
        "from dfi_core.bundle import load_bundle\n"
        "from dfi_core.refinement import _onnx2torch, load_bundle_generator\n"
        "_, missing = _onnx2torch()\n"
        "assert missing == {'NonMaxSuppression', 'RoiAlign'}, missing\n"
        "assert 'torchvision' not in sys.modules and 'torchvision.ops' not in sys.modules\n"
        f"g = load_bundle_generator(load_bundle({str(MODELS / 'fashion-mnist')!r}), prefer='onnx2torch')\n"
        "print(g.source, g.parity['onnx2torch_vs_onnxruntime'])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(MODELS.parent)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "onnx2torch" and float(done.stdout.split()[1]) <= PARITY_ATOL
