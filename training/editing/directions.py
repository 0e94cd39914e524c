"""Editing directions as pure functions of latents (IJCV sec. 3.2, eq. 9, and three later recipes).

Four kinds of directions (the manifest's `method` says which; names are `<recipe>`, `svm_<recipe>`, `pca_<i>`,
`sefa_<i>`):

- eq9: IJCV eq. 9: the mean inferred latent ẑ = invert(x) of images with an attribute minus the mean of images
  without it, computed per group (e.g. per skin tone for man → woman) and averaged over the groups, so that what
  differs between groups cancels and the vector isolates the attribute.
- svm: InterFaceGAN (Shen et al. 2020): the unit normal of a linear SVM separating ẑ of the same two sets
  (scikit-learn's LinearSVC when installed, else the same L2-regularised squared-hinge objective minimised with
  scipy's L-BFGS), scaled to the norm of the matching eq. 9 vector so that strength 1 moves as far.
- pca: GANSpace-style (Härkönen et al. 2020): the top principal components of the train split's ẑ.
- sefa: SeFa (Shen & Zhou 2021): the top eigenvectors of AᵀA, A = G's first layer (`project.0`, z → 4·4·C or
  7·7·C) with the eval-mode BatchNorm scale that follows it folded in (diag(γ/√(σ²+ε))·A: the layer G applies).
  A bundle of any other GAN has A read from its generator.onnx (`training.editing.onnx_first_layer`: the first
  Gemm/MatMul on z), and is refused with the op G starts with when that is not a Linear.
  pca and sefa vectors are unit vectors scaled to the mean norm of the data set's eq. 9 vectors; their sign is
  fixed so that the largest coordinate is positive (the sign of an eigenvector is arbitrary).

The latents come from the bundle's own `invert.onnx` (ONNX Runtime, `bundle_latents`), exactly what the service
will infer for a user's image. Storing them in a bundle is `training.export.extras.add_directions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dfi_core.bundle import Bundle
from dfi_core.datasets import ImageSplit, load_emoji, load_fashion_mnist
from dfi_core.preprocessing import to_model_range
from training.editing.onnx_first_layer import FirstLayer, onnx_first_layer

DIRECTION_KINDS = ("eq9", "svm", "pca", "sefa")
UNSUPERVISED_PREFIXES = ("pca_", "sefa_")
SVM_C = 1.0


def class_names_of(dataset: str) -> list[str]:
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


def attribute_rows(data: ImageSplit) -> list[dict[str, Any]]:
    keys = list(data.attributes)
    return [{"class": data.class_names[label], **{k: data.attributes[k][i] for k in keys}}
            for i, label in enumerate(data.labels.tolist())]  # fmt: skip


def bundle_latents(bundle: Bundle, images: np.ndarray, batch: int = 500, threads: int | None = None) -> np.ndarray:
    """ẑ for [N, H, W, C] uint8 images through the bundle's invert.onnx."""
    graph = bundle.open_graph("invert", providers=["CPUExecutionProvider"], intra_op_threads=threads)
    out = [graph(to_model_range(images[i : i + batch]))
           for i in tqdm(range(0, len(images), batch), desc="invert", unit="batch", leave=False)]  # fmt: skip
    return np.concatenate(out)


def direction_specs(dataset: str) -> list[DirectionSpec]:
    if dataset == "fashion-mnist":
        return fashion_mnist_directions()
    if dataset == "emoji":
        return emoji_directions()
    raise ValueError(f"no direction recipe for data set {dataset!r}")


def load_direction_data(dataset: str, split: str = "train") -> ImageSplit:
    if dataset == "fashion-mnist":
        return load_fashion_mnist(split)
    if dataset == "emoji":
        return load_emoji(split, attribute_keys=("gender", "skin_tone", "hair", "subcategory"))
    raise ValueError(f"no direction recipe for data set {dataset!r}")


def spec_sides(rows: list[dict[str, Any]], spec: DirectionSpec) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows with the attribute and of those without it (no grouping)."""
    with_ = np.array([i for i, r in enumerate(rows) if spec.with_(r)], dtype=np.int64)
    without = np.array([i for i, r in enumerate(rows) if not spec.with_(r) and spec.without(r)], dtype=np.int64)
    return with_, without


def _fix_sign(vectors: np.ndarray) -> np.ndarray:
    """Each row multiplied by ±1 so that its largest-magnitude coordinate is positive (deterministic sign)."""
    rows = np.arange(len(vectors))
    return vectors * np.sign(vectors[rows, np.abs(vectors).argmax(1)])[:, None]


def svm_direction(x_with: np.ndarray, x_without: np.ndarray, c: float = SVM_C) -> tuple[np.ndarray, str, float]:
    """InterFaceGAN: unit normal w/‖w‖ of a linear SVM with the attribute (+1) vs without (−1), classes balanced.

    Returns (unit normal pointing to the attribute side, the solver used, training accuracy).
    """
    x = np.concatenate([x_with, x_without]).astype(np.float64)
    y = np.concatenate([np.ones(len(x_with)), -np.ones(len(x_without))])
    try:
        import sklearn
        from sklearn.svm import LinearSVC
    except ImportError:
        w, b = _squared_hinge_svm(x, y, c)
        solver = f"L2-regularised squared-hinge linear SVM (LinearSVC's objective, C={c:g}) by scipy L-BFGS"
    else:
        model = LinearSVC(C=c, class_weight="balanced", max_iter=20_000, random_state=0).fit(x, y)
        w, b = model.coef_[0].astype(np.float64), float(model.intercept_[0])
        solver = f"scikit-learn {sklearn.__version__} LinearSVC(C={c:g}, class_weight=balanced)"
    accuracy = float(np.mean(np.sign(x @ w + b) == y))
    return (w / np.linalg.norm(w)).astype(np.float32), solver, accuracy


def _squared_hinge_svm(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """min_w,b ½‖w‖² + C Σ s_i max(0, 1 − y_i(w·x_i + b))², s_i = balanced class weights (b not penalised)."""
    from scipy.optimize import minimize

    weights = np.where(y > 0, len(y) / (2 * (y > 0).sum()), len(y) / (2 * (y < 0).sum()))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        slack = np.maximum(0.0, 1.0 - y * (x @ w + b))
        value = 0.5 * w @ w + c * np.sum(weights * slack**2)
        coef = -2.0 * c * weights * slack * y
        return value, np.concatenate([w + x.T @ coef, [coef.sum()]])

    result = minimize(objective, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 5_000, "gtol": 1e-8})  # fmt: skip
    return result.x[:-1], float(result.x[-1])


def pca_directions(latents: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """GANSpace-style: the top-k principal axes of the latents, [k, |z|] orthonormal, and their variance ratios."""
    centered = latents.astype(np.float64) - latents.mean(0)
    _, singular, vt = np.linalg.svd(centered, full_matrices=False)
    ratio = singular**2 / np.sum(singular**2)
    return _fix_sign(vt[:k]), ratio[:k]


def sefa_directions(weight: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """SeFa: the top-k eigenvectors of AᵀA for a first-layer weight A [out, |z|]: [k, |z|] orthonormal + eigenvalues."""
    a = weight.astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(a.T @ a)
    order = np.argsort(eigenvalues)[::-1][:k]
    return _fix_sign(eigenvectors[:, order].T), eigenvalues[order]


def first_layer_of(bundle: Bundle, fold_batchnorm: bool = True) -> FirstLayer:
    """A = G's first layer on z, [out, |z|], for SeFa: a zoo G's `project.0` Linear from generator.safetensors
    with its eval BatchNorm scale folded in; for any other bundle (a user's GAN: generator.onnx only), the first
    Gemm/MatMul on z read from generator.onnx (`onnx_first_layer`), or a `SeFaError` naming the op G starts with."""
    from safetensors.numpy import load_file

    refinement = bundle.manifest.refinement
    tensors = load_file(str(bundle.path(refinement.file))) if refinement is not None else {}
    if "project.0.weight" not in tensors:  # not a zoo DCGAN G: its layers are read from the graph
        entry = bundle.manifest.graphs.generator
        return onnx_first_layer(bundle.path(entry.file), latent_input=entry.input.name,
                                z_dim=bundle.manifest.latent.size, fold_batchnorm=fold_batchnorm,
                                label=f"bundle {bundle.name!r}: {entry.file}")  # fmt: skip
    weight = tensors["project.0.weight"].astype(np.float64)
    batchnorm = None
    if fold_batchnorm and "project.1.weight" in tensors:
        scale = tensors["project.1.weight"] / np.sqrt(tensors["project.1.running_var"].astype(np.float64) + 1e-5)
        weight, batchnorm = scale[:, None] * weight, "BatchNorm1d project.1"
    return FirstLayer(weight, f"Linear project.0 ({refinement.file})", batchnorm)


def generator_first_layer(bundle: Bundle, fold_batchnorm: bool = True) -> np.ndarray:
    """The weight [out, |z|] of `first_layer_of` (float64): what SeFa factorises, for a bundle of any GAN."""
    return first_layer_of(bundle, fold_batchnorm).weight
