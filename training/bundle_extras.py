"""Add the optional parts of a bundle to an existing one: the data set's classifier graph and named directions.

    python -m training export classifier --bundle models/fashion-mnist --classifier CLS/classifier.safetensors
    python -m training export directions --bundle models/fashion-mnist

Both rewrite manifest.json (sha256 of every file) and record their command in `training.commands`.

Directions are IJCV eq. 9: the mean inferred latent ẑ = invert(x) of images with an attribute minus the mean of
images without it, computed per group (e.g. per skin tone for man → woman) and averaged over the groups, so that
what differs between groups cancels and the vector isolates the attribute. The latents come from the bundle's own
`invert.onnx` (ONNX Runtime), exactly what the service will infer for a user's image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dfi_core.bundle import OPTIONAL_GRAPHS, Bundle, load_bundle, write_manifest
from dfi_core.datasets import ImageSplit, load_emoji, load_fashion_mnist
from dfi_core.preprocessing import to_model_range
from training.classifier import load_classifier
from training.export import export_graph

CLASSIFIER_PARITY_TOLERANCE = 1e-4  # the same bound as every other shipped graph


def _add_command(values: dict[str, Any], command: str | None) -> None:
    if command:
        values["training"]["commands"] = [c for c in values["training"]["commands"] if c != command] + [command]


def add_classifier(bundle_dir: Path, classifier_checkpoint: Path, command: str | None = None) -> Bundle:
    """Export the classifier as `classifier.onnx` (image → logits), parity-check it, register it."""
    bundle = load_bundle(bundle_dir)
    model, config = load_classifier(classifier_checkpoint)
    shape = bundle.manifest.image.shape
    if tuple(config.model.shape) != shape:
        raise ValueError(f"classifier input {tuple(config.model.shape)} ≠ bundle image {shape}")
    file, input_name, output_name = OPTIONAL_GRAPHS["classifier"]
    path = export_graph(model, torch.zeros(2, *shape), bundle_dir / file, input_name, output_name)
    values = bundle.manifest.model_dump(mode="json")
    classes = config.class_names if hasattr(config, "class_names") else None
    classes = classes or _class_names(bundle.manifest.dataset.name)
    values["dataset"]["class_names"] = classes
    values["graphs"]["classifier"] = {
        "file": file,
        "input": {"name": input_name, "shape": ["batch", *shape]},
        "output": {"name": output_name, "shape": ["batch", len(classes)]},
        "opset": bundle.manifest.exporter.opset,
    }
    _add_command(values, command)
    bundle = Bundle(bundle_dir, write_manifest(bundle_dir, values))
    x = torch.rand(64, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    graph = bundle.open_graph("classifier", providers=["CPUExecutionProvider"])
    with torch.no_grad():
        error = float(np.abs(graph(x.numpy()) - model(x).numpy()).max())
    if error > CLASSIFIER_PARITY_TOLERANCE:
        raise RuntimeError(f"{path}: ONNX Runtime differs from torch by {error:.2e} > {CLASSIFIER_PARITY_TOLERANCE}")
    return bundle


def _class_names(dataset: str) -> list[str]:
    data = load_fashion_mnist("test") if dataset == "fashion-mnist" else load_emoji("test")
    return list(data.class_names)


@dataclass(frozen=True)
class DirectionSpec:
    """`with_`/`without` select the two sets; `group` names the variable the difference is averaged over."""

    name: str
    description: str
    with_: Callable[[dict[str, Any]], bool]
    without: Callable[[dict[str, Any]], bool]
    group: Callable[[dict[str, Any]], Any] = lambda row: 0


def fashion_mnist_directions() -> list[DirectionSpec]:
    """Class-to-class vectors (IJCV sec. 4.6 applied to Fashion-MNIST's classes)."""
    pairs = [("shirt", "dress"), ("sneaker", "ankle boot"), ("pullover", "coat"), ("t-shirt/top", "shirt"),
             ("sandal", "sneaker"), ("trouser", "dress")]  # fmt: skip
    specs = []
    for source, target in pairs:
        name = f"{source.split('/')[0]}_to_{target}".replace(" ", "_")
        description = f"Fashion-MNIST class '{source}' → '{target}' (mean ẑ difference)"
        specs.append(DirectionSpec(name, description, lambda r, t=target: r["class"] == t,
                                   lambda r, s=source: r["class"] == s))  # fmt: skip
    return specs


def _person(row: dict[str, Any]) -> bool:
    return row["gender"] in ("man", "woman", "person") and row["subcategory"].startswith("person")


def emoji_directions() -> list[DirectionSpec]:
    """The paper's emoji attributes (IJCV Fig. 16): gender, skin tone and five hair styles, each averaged over the
    groups of the other attributes (eq. 9)."""
    specs = [
        DirectionSpec("man_to_woman", "man → woman, averaged over skin tones", lambda r: r["gender"] == "woman",
                      lambda r: r["gender"] == "man", lambda r: r["skin_tone"]),
        DirectionSpec("skin_light_to_dark", "skin tone 1 (light) → 5 (dark), averaged over genders",
                      lambda r: r["skin_tone"] == 5, lambda r: r["skin_tone"] == 1, lambda r: r["gender"]),
    ]  # fmt: skip
    for hair in ("bald", "red", "white", "curly", "blond"):
        specs.append(DirectionSpec(
            f"{hair}_hair" if hair != "bald" else "bald", f"add {hair} hair: people with it vs people without, "
            "averaged over gender × skin tone", lambda r, h=hair: r["hair"] == h,
            lambda r: r["hair"] == "none" and _person(r) and r["gender"] in ("man", "woman"),
            lambda r: (r["gender"], r["skin_tone"])))  # fmt: skip
    return specs


def grouped_direction(latents: np.ndarray, rows: list[dict[str, Any]], spec: DirectionSpec, min_group: int = 1
                      ) -> tuple[np.ndarray, dict[str, int]]:  # fmt: skip
    """Eq. 9: mean over groups of (mean ẑ with − mean ẑ without); groups lacking either side are skipped."""
    groups: dict[Any, tuple[list[int], list[int]]] = {}
    for i, row in enumerate(rows):
        side = 0 if spec.with_(row) else 1 if spec.without(row) else None
        if side is not None:
            groups.setdefault(spec.group(row), ([], []))[side].append(i)
    usable = {g: ab for g, ab in groups.items() if len(ab[0]) >= min_group and len(ab[1]) >= min_group}
    if not usable:
        raise ValueError(f"direction {spec.name}: no group has images both with and without the attribute")
    diffs = [latents[a].mean(0) - latents[b].mean(0) for a, b in usable.values()]
    counts = {"with": sum(len(a) for a, _ in usable.values()), "without": sum(len(b) for _, b in usable.values()),
              "groups": len(usable)}  # fmt: skip
    return np.mean(diffs, axis=0).astype(np.float32), counts


def _rows(data: ImageSplit) -> list[dict[str, Any]]:
    keys = list(data.attributes)
    return [{"class": data.class_names[label], **{k: data.attributes[k][i] for k in keys}}
            for i, label in enumerate(data.labels.tolist())]  # fmt: skip


def infer_latents(bundle: Bundle, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """ẑ for [N, H, W, C] uint8 images through the bundle's invert.onnx."""
    graph = bundle.open_graph("invert", providers=["CPUExecutionProvider"])
    out = [graph(to_model_range(images[i : i + batch]))
           for i in tqdm(range(0, len(images), batch), desc="invert", unit="batch", leave=False)]  # fmt: skip
    return np.concatenate(out)


def add_directions(bundle_dir: Path, command: str | None = None) -> tuple[Bundle, dict[str, dict[str, int]]]:
    """Compute the data set's named directions on its train split and store them in the bundle."""
    bundle = load_bundle(bundle_dir)
    dataset = bundle.manifest.dataset.name
    if dataset == "fashion-mnist":
        data, specs = load_fashion_mnist("train"), fashion_mnist_directions()
    elif dataset == "emoji":
        data = load_emoji("train", attribute_keys=("gender", "skin_tone", "hair", "subcategory"))
        specs = emoji_directions()
    else:
        raise ValueError(f"no direction recipe for data set {dataset!r}")
    latents = infer_latents(bundle, data.images)
    rows = _rows(data)
    values = bundle.manifest.model_dump(mode="json")
    values["directions"] = {}
    folder = bundle_dir / "directions"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.npy"):
        old.unlink()
    summary = {}
    for spec in specs:
        vector, counts = grouped_direction(latents, rows, spec)
        np.save(folder / f"{spec.name}.npy", vector)
        values["directions"][spec.name] = {"file": f"directions/{spec.name}.npy", "description": spec.description,
                                           "method": "IJCV eq. 9 (grouped mean ẑ difference, train split)",
                                           "counts": counts}  # fmt: skip
        summary[spec.name] = counts
    _add_command(values, command)
    return Bundle(bundle_dir, write_manifest(bundle_dir, values)), summary
