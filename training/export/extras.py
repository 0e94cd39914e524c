"""Add the optional parts of a bundle to an existing one: the data set's classifier graph and named directions.

    python -m training export classifier --bundle models/fashion-mnist --classifier CLS/classifier.safetensors
    python -m training export directions --bundle models/fashion-mnist --kinds eq9,svm,pca,sefa

Both rewrite manifest.json through `dfi_core.bundle.edit_bundle` (sha256 of every file, written once) and record
their command in `training.commands`. The direction maths (eq. 9, SVM, PCA, SeFa) is `training.editing.directions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfi_core.bundle import OPTIONAL_GRAPHS, Bundle, Direction, edit_bundle, load_bundle
from training.classifiers.classifier import load_classifier
from training.editing.directions import (
    DIRECTION_KINDS,
    DirectionSpec,
    attribute_rows,
    bundle_latents,
    class_names_of,
    direction_specs,
    first_layer_of,
    grouped_direction,
    load_direction_data,
    pca_directions,
    sefa_directions,
    spec_sides,
    svm_direction,
)
from training.export.onnx import Exporter, export_graph

CLASSIFIER_PARITY_TOLERANCE = 1e-4  # the same bound as every other shipped graph


def add_classifier(
    bundle_dir: Path, classifier_checkpoint: Path, command: str | None = None, exporter: Exporter | None = None
) -> Bundle:
    """Export the classifier as `classifier.onnx` (image → logits), parity-check it, register it. exporter: None →
    `training.export.onnx.default_exporter()`."""
    with edit_bundle(bundle_dir) as edit:
        manifest = edit.loaded.manifest
        model, config = load_classifier(classifier_checkpoint)
        shape = manifest.image.shape
        if tuple(config.model.shape) != shape:
            raise ValueError(f"classifier input {tuple(config.model.shape)} ≠ bundle image {shape}")
        file, input_name, output_name = OPTIONAL_GRAPHS["classifier"]
        path = export_graph(model, torch.zeros(2, *shape), bundle_dir / file, input_name, output_name,
                            opset=manifest.exporter.opset, exporter=exporter)  # fmt: skip
        classes = config.class_names if hasattr(config, "class_names") else None
        classes = classes or class_names_of(manifest.dataset.name)
        edit.set_class_names(classes)
        entry = {
            "file": file,
            "input": {"name": input_name, "shape": ["batch", *shape]},
            "output": {"name": output_name, "shape": ["batch", len(classes)]},
            "opset": manifest.exporter.opset,
        }
        edit.set_graph("classifier", entry)
        edit.record_command(command)
    bundle = edit.written
    x = torch.rand(64, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    graph = bundle.open_graph("classifier", providers=["CPUExecutionProvider"])
    with torch.no_grad():
        error = float(np.abs(graph(x.numpy()) - model(x).numpy()).max())
    if error > CLASSIFIER_PARITY_TOLERANCE:
        raise RuntimeError(f"{path}: ONNX Runtime differs from torch by {error:.2e} > {CLASSIFIER_PARITY_TOLERANCE}")
    return bundle


def _store(vectors: dict[str, np.ndarray], directions: dict[str, Direction], name: str, vector: np.ndarray,
           description: str, method: str, counts: dict[str, int]) -> None:  # fmt: skip
    # In memory: store_directions writes the files only once every kind has been computed (see there).
    vectors[name] = vector.astype(np.float32)
    directions[name] = Direction(file=f"directions/{name}.npy", description=description, method=method,
                                 counts=counts)  # fmt: skip


def _check_kinds(kinds: tuple[str, ...]) -> None:
    if not kinds or set(kinds) - set(DIRECTION_KINDS):
        raise ValueError(f"direction kinds must be among {DIRECTION_KINDS}, got {kinds}")


def add_directions(
    bundle_dir: Path,
    command: str | None = None,
    kinds: tuple[str, ...] = DIRECTION_KINDS,
    n_components: int = 5,
    threads: int | None = None,
) -> tuple[Bundle, dict[str, dict[str, Any]]]:
    """Compute the data set's named directions on its train split and store them in the bundle (replacing all).

    kinds: any of eq9, svm, pca, sefa. Returns the bundle and, per direction, its counts (and SVM accuracy).
    """
    _check_kinds(kinds)
    bundle = load_bundle(bundle_dir)
    dataset = bundle.manifest.dataset.name
    specs = direction_specs(dataset)
    data = load_direction_data(dataset)
    latents = bundle_latents(bundle, data.images, threads=threads)
    return store_directions(bundle, latents, attribute_rows(data), specs, kinds, n_components, command)


def store_directions(
    bundle: Bundle,
    latents: np.ndarray,
    rows: list[dict[str, Any]],
    specs: list[DirectionSpec],
    kinds: tuple[str, ...] = DIRECTION_KINDS,
    n_components: int = 5,
    command: str | None = None,
) -> tuple[Bundle, dict[str, dict[str, Any]]]:
    """Compute the directions of `kinds` from latents [N, |z|] and their label rows; replace the bundle's set."""
    _check_kinds(kinds)
    # Every vector is computed before a file is touched: a kind that fails (eq. 9 with an empty group, SeFa on a G
    # whose first layer is no Linear) leaves the bundle's directions and manifest as they were.
    stored: dict[str, Direction] = {}
    vectors: dict[str, np.ndarray] = {}
    summary: dict[str, dict[str, Any]] = {}
    eq9 = {spec.name: grouped_direction(latents, rows, spec) for spec in specs}
    mean_norm = float(np.mean([np.linalg.norm(v) for v, _ in eq9.values()]))
    if "eq9" in kinds:
        for spec in specs:
            vector, counts = eq9[spec.name]
            _store(vectors, stored, spec.name, vector, spec.description,
                   "IJCV eq. 9 (grouped mean ẑ difference, train split)", counts)  # fmt: skip
            summary[spec.name] = counts
    if "svm" in kinds:
        for spec in specs:
            with_, without = spec_sides(rows, spec)
            unit, solver, accuracy = svm_direction(latents[with_], latents[without])
            norm = float(np.linalg.norm(eq9[spec.name][0]))
            name = f"svm_{spec.name}"
            counts = {"with": len(with_), "without": len(without)}
            description = (f"linear-SVM counterpart of '{spec.name}' (the same two sets, no grouping): unit normal "
                           f"of the hyperplane separating their ẑ (train accuracy {accuracy:.3f}), scaled to the norm "
                           f"of eq. 9 '{spec.name}' ({norm:.3f})")  # fmt: skip
            _store(vectors, stored, name, unit * norm, description,
                   f"linear SVM normal (InterFaceGAN; {solver}), train split", counts)  # fmt: skip
            summary[name] = {**counts, "train_accuracy": round(accuracy, 4)}
    if "pca" in kinds:
        components, ratio = pca_directions(latents, n_components)
        for i, (unit, r) in enumerate(zip(components, ratio, strict=True)):
            counts = {"latents": len(latents), "component": i}
            _store(vectors, stored, f"pca_{i}", unit * mean_norm, f"principal component {i} of the train split's ẑ "
                   f"({100 * r:.1f} % of the variance); unit vector scaled to the mean eq. 9 norm ({mean_norm:.3f})",
                   "PCA of inferred latents (GANSpace-style, unsupervised), train split", counts)  # fmt: skip
            summary[f"pca_{i}"] = {**counts, "variance_ratio": round(float(r), 4)}
    if "sefa" in kinds:
        layer = first_layer_of(bundle)
        weight = layer.weight
        components, eigenvalues = sefa_directions(weight, n_components)
        for i, (unit, e) in enumerate(zip(components, eigenvalues, strict=True)):
            counts = {"component": i, "weight_rows": int(weight.shape[0])}
            _store(vectors, stored, f"sefa_{i}", unit * mean_norm, f"eigenvector {i} of AᵀA (eigenvalue {e:.3g}), A = "
                   f"G's first layer on z: {layer.describe()}; unit vector scaled to the mean eq. 9 norm "
                   f"({mean_norm:.3f})", "SeFa (closed-form factorisation of G's first layer, unsupervised)",
                   counts)  # fmt: skip
            summary[f"sefa_{i}"] = {**counts, "eigenvalue": round(float(e), 4)}
    folder = bundle.folder / "directions"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.npy"):
        old.unlink()
    for name, vector in vectors.items():
        np.save(folder / f"{name}.npy", vector)
    with edit_bundle(bundle) as edit:
        edit.set_directions(stored)
        edit.record_command(command, replaces="python -m training export directions")
    return edit.written, summary
