"""Bundle format and ONNX Runtime wrapper, without torch: tiny hand-built ONNX graphs with the bundle's contract.

(The torch export of real networks into bundles is tested in tests/training/export/test_onnx.py.)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from dfi_core.bundle import (
    FORMAT_VERSION,
    GRAPH_CONTRACT,
    MANIFEST_NAME,
    BundleError,
    Manifest,
    edit_bundle,
    load_bundle,
    sha256_file,
    write_manifest,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dfi_core.onnx_graph import OnnxGraph  # noqa: E402

SHAPE, Z = (1, 4, 4), 8
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.parent.name for p in (ROOT / "models").glob("*/manifest.json"))
FLAT = int(np.prod(SHAPE))


def _save(path: Path, nodes: list, inputs: tuple, output: tuple, weights: dict[str, np.ndarray]) -> None:
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(inputs[0], TensorProto.FLOAT, inputs[1])],
        [helper.make_tensor_value_info(output[0], TensorProto.FLOAT, output[1])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime ≥ 1.14
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def make_graphs(folder: Path) -> None:
    """invert: image → flatten → ·W → z; generator: z → ·W' → reshape → image; features: image → flatten."""
    rng = np.random.default_rng(0)
    image, z = ["batch", *SHAPE], ["batch", Z]
    w_inv = rng.standard_normal((FLAT, Z)).astype(np.float32)
    w_gen = rng.standard_normal((Z, FLAT)).astype(np.float32)
    _save(
        folder / "invert.onnx",
        [helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["z"])],
        ("image", image),
        ("z", z),
        {"w": w_inv},
    )
    _save(
        folder / "generator.onnx",
        [helper.make_node("MatMul", ["z", "w"], ["flat"]), helper.make_node("Reshape", ["flat", "shape"], ["image"])],
        ("z", z),
        ("image", image),
        {"w": w_gen, "shape": np.array([-1, *SHAPE], dtype=np.int64)},
    )
    _save(
        folder / "discriminator_features.onnx",
        [helper.make_node("Flatten", ["image"], ["features"])],
        ("image", image),
        ("features", ["batch", FLAT]),
        {},
    )
    (folder / "generator.safetensors").write_bytes(b"not really safetensors: the loader does not parse it")


def manifest_values(name: str = "tiny") -> dict:
    image, z = ["batch", *SHAPE], ["batch", Z]

    def graph(key: str, in_shape: list, out_shape: list) -> dict:
        file, in_name, out_name = GRAPH_CONTRACT[key]
        return {
            "file": file,
            "input": {"name": in_name, "shape": in_shape},
            "output": {"name": out_name, "shape": out_shape},
            "opset": 17,
        }

    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": "2024-01-01T00:00:00+00:00",
        "dataset": {"name": "fashion-mnist", "split": "train", "license": "MIT, zalandoresearch/fashion-mnist"},
        "image": {"channels": 1, "height": 4, "width": 4},
        "latent": {"size": Z},
        "graphs": {
            "invert": graph("invert", image, z),
            "generator": graph("generator", z, image),
            "discriminator_features": graph("discriminator_features", image, ["batch", FLAT]),
        },
        "refinement": {"file": "generator.safetensors", "generator_config": {"shape": list(SHAPE), "z_dim": Z}},
        "training": {"commands": ["python -m training train-gan ..."], "seeds": {"gan": 0}, "checkpoints": ["g.st"]},
        "metrics": {"psnr": 15.2},
        "exporter": {"torch": "none", "onnx": onnx.__version__, "exporter": "onnx.helper", "opset": 17},
    }


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    make_graphs(folder)
    write_manifest(folder, manifest_values())
    return folder


def _rewrite_manifest(folder: Path, change) -> None:
    values = json.loads((folder / MANIFEST_NAME).read_text())
    change(values)
    (folder / MANIFEST_NAME).write_text(json.dumps(values))


# ------------------------------------------------------------------------------------------------ manifest


def test_write_manifest_lists_every_file_with_its_sha256(bundle_dir: Path) -> None:
    text = (bundle_dir / MANIFEST_NAME).read_text()
    values = json.loads(text)
    assert text == json.dumps(values, sort_keys=True, indent=2) + "\n"
    assert set(values["files"]) == {
        "invert.onnx",
        "generator.onnx",
        "discriminator_features.onnx",
        "generator.safetensors",
    }
    assert all(values["files"][f] == sha256_file(bundle_dir / f) for f in values["files"])
    bundle = load_bundle(bundle_dir)
    assert bundle.name == "tiny" and bundle.folder == bundle_dir
    assert bundle.manifest.latent.prior.distribution == "normal" and bundle.manifest.latent.prior.std == 1
    assert bundle.manifest.image.value_range == (-1.0, 1.0) and bundle.manifest.image.layout == "NCHW"
    assert bundle.manifest.directions == {} and bundle.manifest.graphs.outpaint is None


def test_files_in_subfolders_are_listed(bundle_dir: Path) -> None:
    (bundle_dir / "directions").mkdir()
    np.save(bundle_dir / "directions" / "smile.npy", np.zeros(Z, np.float32))
    values = manifest_values()
    values["directions"] = {"smile": {"file": "directions/smile.npy", "description": "+smile", "counts": {"a": 20}}}
    manifest = write_manifest(bundle_dir, values)
    assert "directions/smile.npy" in manifest.files
    assert load_bundle(bundle_dir).manifest.directions["smile"].counts == {"a": 20}


def test_write_manifest_refuses_a_reference_to_a_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    make_graphs(folder)
    (folder / "generator.safetensors").unlink()
    with pytest.raises(BundleError, match=r"generator\.safetensors"):
        write_manifest(folder, manifest_values())


def test_missing_manifest(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match=r"bundle 'tiny'.*manifest\.json is missing"):
        load_bundle(bundle_dir)


def test_invalid_json(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match=r"'tiny'.*manifest\.json is not valid JSON"):
        load_bundle(bundle_dir)


def test_unknown_format_version(bundle_dir: Path) -> None:
    _rewrite_manifest(bundle_dir, lambda v: v.update(format_version="dfi-bundle/2"))
    with pytest.raises(BundleError, match=r"'tiny'.*manifest\.json.*unknown format_version 'dfi-bundle/2'"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda v: v.update(colour="red"), "colour"),
        (lambda v: v["image"].update(chanels=1), r"image\.chanels"),
        (lambda v: v["graphs"]["invert"].update(opsett=17), r"graphs\.invert\.opsett"),
    ],
)
def test_unknown_key_is_refused(bundle_dir: Path, change, where: str) -> None:
    _rewrite_manifest(bundle_dir, change)
    with pytest.raises(BundleError, match=rf"'tiny'.*manifest\.json: invalid manifest: {where}: Extra inputs"):
        load_bundle(bundle_dir)


def test_schema_errors_are_reported_briefly(bundle_dir: Path) -> None:
    _rewrite_manifest(bundle_dir, lambda v: v["image"].update(channels=2))
    with pytest.raises(BundleError, match=r"image\.channels: Input should be 1 or 3") as info:
        load_bundle(bundle_dir)
    assert len(str(info.value)) < 400


def test_graph_contract_is_enforced(bundle_dir: Path) -> None:
    _rewrite_manifest(bundle_dir, lambda v: v["graphs"]["invert"]["output"].update(name="latent"))
    with pytest.raises(BundleError, match=r"graph invert must map 'image' → 'z'"):
        load_bundle(bundle_dir)
    _rewrite_manifest(bundle_dir, lambda v: v["graphs"]["invert"]["output"].update(name="z", shape=["batch", 9]))
    with pytest.raises(BundleError, match=r"graph invert output shape \['batch', 9\]"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("path", ["../outside.onnx", "/abs/invert.onnx", "manifest.json"])
def test_paths_must_stay_inside_the_bundle(bundle_dir: Path, path: str) -> None:
    _rewrite_manifest(bundle_dir, lambda v: v["files"].update({path: "0" * 64}))
    with pytest.raises(BundleError, match="relative POSIX path"):
        load_bundle(bundle_dir)


def test_tampered_byte_is_a_sha256_mismatch(bundle_dir: Path) -> None:
    path = bundle_dir / "invert.onnx"
    data = bytearray(path.read_bytes())
    expected = sha256_file(path)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problem = rf"invert\.onnx: sha256 mismatch: expected {expected}, got [0-9a-f]{{64}}"
    with pytest.raises(BundleError, match=rf"'tiny'.*{problem}"):
        load_bundle(bundle_dir)
    load_bundle(bundle_dir, verify=False)  # hashing is what verify adds


def test_deleted_file(bundle_dir: Path) -> None:
    (bundle_dir / "generator.onnx").unlink()
    for verify in (True, False):
        with pytest.raises(BundleError, match=r"'tiny'.*generator\.onnx is listed in the manifest but missing"):
            load_bundle(bundle_dir, verify=verify)


def test_extra_unlisted_file(bundle_dir: Path) -> None:
    (bundle_dir / "notes.txt").write_text("hello")
    with pytest.raises(BundleError, match=r"'tiny'.*notes\.txt: file\(s\) not listed in the manifest"):
        load_bundle(bundle_dir)


def test_referenced_but_unlisted_file(bundle_dir: Path) -> None:
    _rewrite_manifest(bundle_dir, lambda v: v["files"].pop("generator.safetensors"))
    with pytest.raises(BundleError, match=r"generator\.safetensors is referenced by the manifest but not listed"):
        load_bundle(bundle_dir)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a folder"):
        load_bundle(tmp_path / "nope")


def test_manifest_model_round_trip() -> None:
    values = manifest_values()
    values["files"] = {}
    manifest = Manifest.model_validate(values)
    assert Manifest.model_validate_json(manifest.dumps()) == manifest


def test_dfi_core_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, dfi_core.bundle, dfi_core.onnx_graph, dfi_core.preprocessing; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------- edit_bundle


@pytest.mark.parametrize("name", SHIPPED)
def test_an_empty_edit_of_a_shipped_bundle_rewrites_its_manifest_byte_for_byte(name: str, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(ROOT / "models" / name, tmp_path / name))
    shipped = (folder / MANIFEST_NAME).read_bytes()
    with edit_bundle(folder) as edit:
        pass
    assert (folder / MANIFEST_NAME).read_bytes() == shipped
    assert edit.written.manifest == edit.loaded.manifest == load_bundle(folder).manifest
    # Recording a command the bundle already has (shared-weights re-runs) changes nothing either.
    with edit_bundle(folder) as edit:
        edit.record_command_once(edit.loaded.manifest.training.commands[0])
    assert (folder / MANIFEST_NAME).read_bytes() == shipped


def test_record_command_replaces_an_identical_and_a_superseded_command(bundle_dir: Path) -> None:
    with edit_bundle(bundle_dir) as edit:
        edit.record_command("export directions --kinds eq9")
        edit.record_command("export outpaint --bundle b")
        edit.record_command("export classifier")
    with edit_bundle(bundle_dir) as edit:
        edit.record_command("export classifier")  # moves to the end, once
        edit.record_command("export directions --kinds all", replaces="export directions")
        edit.record_command(None, replaces="export outpaint")  # no command: nothing recorded, nothing dropped
        edit.record_command_once("export outpaint --bundle b")  # already there: keeps its place
        edit.record_command_once("share")
    commands = load_bundle(bundle_dir).manifest.training.commands
    assert commands == ["python -m training train-gan ...", "export outpaint --bundle b", "export classifier",
                        "export directions --kinds all", "share"]  # fmt: skip


def test_edits_are_validated_hashed_and_written_once(bundle_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"torch weights")
    before = (bundle_dir / MANIFEST_NAME).read_bytes()
    with edit_bundle(bundle_dir) as edit:  # files the edit adds are written inside the block, after the load
        (bundle_dir / "directions").mkdir()
        np.save(bundle_dir / "directions" / "up.npy", np.ones(Z, np.float32))
        target = edit.add_file(source, "inverter.safetensors")
        edit.record_checkpoint("inverter.safetensors")
        edit.set_metric("onnx_parity_max_abs_error", {"invert": 1e-6})
        edit.set_directions({"up": {"file": "directions/up.npy", "description": "up", "counts": {"a": 3}}})
        edit.set_shared_weights("invert.onnx", "inverter.safetensors")
        edit.set_class_names(["a", "b"])
        assert (bundle_dir / MANIFEST_NAME).read_bytes() == before  # nothing is written inside the block
        with pytest.raises(RuntimeError, match="not been written"):
            _ = edit.written
    assert target.stat().st_mode & 0o777 == 0o644
    manifest = load_bundle(bundle_dir).manifest  # verifies every sha256 and that nothing is unlisted
    assert manifest == edit.written.manifest
    assert manifest.files["inverter.safetensors"] == sha256_file(source)
    assert manifest.training.checkpoints == ["g.st", "inverter.safetensors"]
    assert manifest.metrics == {"psnr": 15.2, "onnx_parity_max_abs_error": {"invert": 1e-6}}
    assert manifest.directions["up"].counts == {"a": 3} and manifest.directions["up"].method == "mean-difference"
    assert manifest.exporter.shared_weights == {"invert.onnx": "inverter.safetensors"}
    assert manifest.dataset.class_names == ["a", "b"]
    text = (bundle_dir / MANIFEST_NAME).read_text()
    assert text == manifest.dumps() and not list(bundle_dir.glob(".*.tmp"))
    with pytest.raises(RuntimeError, match="already written"):
        edit.set_metric("psnr", 0.0)


def test_an_edit_that_raises_or_does_not_validate_writes_nothing(bundle_dir: Path) -> None:
    before = (bundle_dir / MANIFEST_NAME).read_bytes()
    with pytest.raises(KeyError), edit_bundle(bundle_dir) as edit:
        edit.record_command("never recorded")
        raise KeyError("export failed")
    with pytest.raises(BundleError, match=r"'tiny'.*graphs\.classifier: opset"), edit_bundle(bundle_dir) as edit:
        edit.set_graph("classifier", {"file": "classifier.onnx", "input": {"name": "image", "shape": [1]},
                                      "output": {"name": "logits", "shape": [1]}, "opset": 0})  # fmt: skip
    with pytest.raises(BundleError, match="no graph 'decoder'"), edit_bundle(bundle_dir) as edit:
        edit.set_graph("decoder", {})
    # Each part valid, the whole not: the classifier's 3 logits disagree with the 2 class names (checked on write).
    entry = {"file": "classifier.onnx", "input": {"name": "image", "shape": ["batch", *SHAPE]},
             "output": {"name": "logits", "shape": ["batch", 3]}, "opset": 17}  # fmt: skip
    with pytest.raises(BundleError, match=r"classifier output \['batch', 3\]"), edit_bundle(bundle_dir) as edit:
        (bundle_dir / "classifier.onnx").write_bytes(b"a graph")
        edit.set_class_names(["a", "b"])
        edit.set_graph("classifier", entry)
    assert (bundle_dir / MANIFEST_NAME).read_bytes() == before
    (bundle_dir / "classifier.onnx").unlink()
    assert load_bundle(bundle_dir).manifest.graphs.classifier is None


def test_only_the_bundle_module_and_the_new_bundle_export_call_write_manifest() -> None:
    """Every change to an existing bundle goes through edit_bundle; only a brand new bundle calls the writer."""
    callers = sorted(
        path.relative_to(ROOT).as_posix()
        for package in ("dfi_core", "training", "service", "scripts", "benchmarks")
        for path in (ROOT / package).rglob("*.py")
        if "write_manifest(" in path.read_text(encoding="utf-8")
    )
    assert callers == ["dfi_core/bundle.py", "training/export/onnx.py"]


# ---------------------------------------------------------------------------------------------- OnnxGraph


def test_onnx_graph_reads_names_and_shapes_from_the_session(bundle_dir: Path) -> None:
    graph = OnnxGraph(bundle_dir / "invert.onnx", providers=["CPUExecutionProvider"], intra_op_threads=1)
    assert graph.provider == "CPUExecutionProvider"
    assert (graph.input_name, graph.input_shape) == ("image", ("batch", *SHAPE))
    assert (graph.output_name, graph.output_shape) == ("z", ("batch", Z))
    for batch in (1, 7, 64):
        x = np.random.default_rng(batch).uniform(-1, 1, (batch, *SHAPE)).astype(np.float32)
        assert graph(x).shape == (batch, Z)


def test_onnx_graph_default_providers_end_with_cpu(bundle_dir: Path) -> None:
    graph = OnnxGraph(bundle_dir / "generator.onnx")
    assert graph.requested_providers[-1] == "CPUExecutionProvider"
    assert graph.provider in graph.requested_providers
    assert "provider=" in repr(graph)


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((1, 4, 4), np.float32), r"rank 4\), got rank 3"),
        (np.zeros((2, 1, 4, 4, 1), np.float32), "rank 5"),
        (np.zeros((2, 3, 4, 4), np.float32), r"axis 1: 3 ≠ 1"),
        (np.zeros((2, 1, 5, 4), np.float32), r"axis 2: 5 ≠ 4"),
        (np.zeros((0, 1, 4, 4), np.float32), "empty batch"),
        (np.zeros((2, 1, 4, 4), np.float64), "got dtype float64"),
        (np.zeros((2, 1, 4, 4), np.uint8), "got dtype uint8"),
        (np.full((2, 1, 4, 4), np.nan, np.float32), "32 NaN/inf"),
        (np.pad(np.full((1, 1, 1, 1), -np.inf, np.float32), ((0, 0), (0, 0), (0, 3), (0, 3))), "1 NaN/inf"),
        ([[0.0]], "got list"),
    ],
)
def test_onnx_graph_rejects_bad_input(bundle_dir: Path, array, problem: str) -> None:
    graph = OnnxGraph(bundle_dir / "invert.onnx", providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match=r"expected 'image' \[batch, 1, 4, 4\] float32") as info:
        graph(array)
    assert info.match(problem)


def test_onnx_graph_accepts_non_contiguous_input(bundle_dir: Path) -> None:
    graph = OnnxGraph(bundle_dir / "discriminator_features.onnx", providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 4, 8)).astype(np.float32)[..., ::2]
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(graph(x), x.reshape(3, -1))


def test_open_graph_checks_the_manifest_against_the_session(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    for name, (_, in_name, out_name) in GRAPH_CONTRACT.items():
        graph = bundle.open_graph(name, providers=["CPUExecutionProvider"])
        entry = bundle.manifest.graphs.entries()[name]
        assert (graph.input_name, graph.output_name) == (in_name, out_name)
        assert list(graph.input_shape) == entry.input.shape and list(graph.output_shape) == entry.output.shape
    with pytest.raises(BundleError, match="has no graph 'outpaint'"):
        bundle.open_graph("outpaint")
    # A manifest that lies about a graph is caught when the graph is opened.
    _rewrite_manifest(bundle_dir, lambda v: v["graphs"]["discriminator_features"]["output"].update(shape=["batch", 3]))
    with pytest.raises(BundleError, match=r"discriminator_features\.onnx: the graph has"):
        load_bundle(bundle_dir, verify=False).open_graph("discriminator_features", providers=["CPUExecutionProvider"])


def test_missing_graph_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OnnxGraph(tmp_path / "none.onnx")
