"""Latent editing: the direction maths (eq. 9, linear SVM, PCA, SeFa), the flip-rate / entanglement measure on a
toy judge, and directions written into a bundle that still verifies. Synthetic data only: seconds."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from dfi_core.bundle import DIRECTION_NAME_PATTERN, load_bundle
from training.editing.directions import (
    DirectionSpec,
    generator_first_layer,
    grouped_direction,
    pca_directions,
    sefa_directions,
    svm_direction,
)
from training.editing.evaluate import _supervised
from training.editing.judges import Judge, Target, entanglement, flip_rate
from training.export.extras import store_directions

MODELS = Path(__file__).resolve().parents[3] / "models"


def test_eq9_grouped_mean_cancels_what_differs_between_groups() -> None:
    """Attribute a in every group, group offsets b_g and unequal group sizes: the grouped mean difference is a,
    the pooled mean difference is biased by the group that holds most of the attribute."""
    rng = np.random.default_rng(0)
    a, offsets = np.eye(4)[0] * 2.0, {0: np.zeros(4), 1: np.eye(4)[1] * 5.0}
    rows, latents = [], []
    for group, (n_with, n_without) in {0: (10, 90), 1: (90, 10)}.items():
        for has in [True] * n_with + [False] * n_without:
            rows.append({"group": group, "has": has})
            latents.append(offsets[group] + (a if has else 0) + rng.normal(0, 1e-3, 4))
    latents = np.array(latents, dtype=np.float32)
    spec = DirectionSpec("a", "a", lambda r: r["has"], lambda r: not r["has"], lambda r: r["group"])
    vector, counts = grouped_direction(latents, rows, spec)
    assert np.allclose(vector, a, atol=1e-2)
    assert counts == {"with": 100, "without": 100, "groups": 2}
    has = np.array([r["has"] for r in rows])
    pooled = latents[has].mean(0) - latents[~has].mean(0)
    assert abs(pooled[1]) > 3.0  # the group offset leaks into the naive difference
    with pytest.raises(ValueError, match="no group"):
        grouped_direction(latents, rows, DirectionSpec("x", "x", lambda r: False, lambda r: True))


def _separable(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two clouds separated along a known unit normal (margin 1.5), unbalanced 30 vs 300."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=16)
    normal /= np.linalg.norm(normal)
    x = rng.normal(size=(330, 16))
    x -= np.outer(x @ normal, normal)  # no spread along the normal ...
    x += np.outer(np.r_[np.full(30, 1.5), np.full(300, -1.5)], normal)  # ... but ±1.5 along it
    return x[:30], x[30:], normal


@pytest.mark.parametrize("backend", ["default", "scipy"])
def test_svm_direction_separates_a_linearly_separable_set(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "scipy":
        monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` raises: the scipy fallback runs
    x_with, x_without, normal = _separable()
    unit, solver, accuracy = svm_direction(x_with, x_without)
    assert ("scipy" in solver) == (backend == "scipy" or "scikit-learn" not in solver)
    assert unit.dtype == np.float32 and np.isclose(np.linalg.norm(unit), 1.0, atol=1e-5)
    assert accuracy == 1.0 and solver
    assert (x_with @ unit).min() > (x_without @ unit).max()  # the hyperplane separates them
    assert unit @ normal > 0.95  # and its normal is the true one, pointing to the attribute side


def test_pca_directions_are_orthonormal_and_find_the_widest_axis() -> None:
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(2000, 8)) * np.array([5.0, 3.0, 1, 1, 1, 1, 1, 1])
    components, ratio = pca_directions(latents, 3)
    assert components.shape == (3, 8)
    assert np.allclose(components @ components.T, np.eye(3), atol=1e-8)
    assert abs(components[0, 0]) > 0.99 and abs(components[1, 1]) > 0.99
    assert np.all(np.diff(ratio) <= 0) and 0 < ratio.sum() <= 1
    assert np.all(components[np.arange(3), np.abs(components).argmax(1)] > 0)  # sign fixed: largest coordinate > 0


def test_sefa_directions_are_the_top_right_singular_vectors() -> None:
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(40, 6)))
    v, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    weight = u @ np.diag([9.0, 7.0, 5.0, 3.0, 2.0, 1.0]) @ v.T  # A = U S Vᵀ: eigenvectors of AᵀA are V's columns
    components, eigenvalues = sefa_directions(weight, 3)
    assert np.allclose(components @ components.T, np.eye(3), atol=1e-8)
    assert np.allclose(eigenvalues, [81.0, 49.0, 25.0])
    assert np.allclose(np.abs(components @ v[:, :3]), np.eye(3), atol=1e-6)


def test_flip_rate_and_entanglement_on_a_toy_judge() -> None:
    """'Images' are the latents themselves; the judge reads attribute 0 from z[0] and attribute 1 from z[1]."""

    class Identity:
        def generate(self, z: np.ndarray) -> np.ndarray:
            return z

        def category(self, images: np.ndarray) -> np.ndarray:
            return (images[:, 2] > 0).astype(int)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))

    judge = Judge(["a", "b"], lambda x: sigmoid(4 * x[:, :2]))
    target = Target(0, lambda s: s[:, 0] > 0.5, "P(a) > 0.5")
    z = np.zeros((100, 3), dtype=np.float32)
    z[:, 0] = np.linspace(-2, -0.01, 100)  # nobody has attribute a yet
    z[:, 2] = 1
    scores = judge.score(z)
    assert flip_rate(scores, target.decision) == 0.0
    assert entanglement(scores, scores, [1]) == 0.0
    clean = np.array([1.0, 0.0, 0.0], dtype=np.float32)  # moves a only
    result = _supervised("a", "a", clean, z, Identity(), judge, target, (0.5, 1.0, 3.0), {})
    rates = [result["sweep"][s]["flip_rate"] for s in ("0", "0.5", "1", "3")]
    assert rates[0] == 0.0 and rates == sorted(rates) and rates[-1] == 1.0
    assert np.isclose(rates[2], np.mean(z[:, 0] + 1 > 0))  # exactly the images pushed past the boundary
    assert result["sweep"]["1"]["entanglement"] == 0.0 and result["sweep"]["1"]["category_kept"] == 1.0
    leaky = np.array([1.0, 0.5, -5.0], dtype=np.float32)  # also moves b, and flips the category
    leak = _supervised("a", "a", leaky, z, Identity(), judge, target, (1.0,), {})["sweep"]["1"]
    expected = np.abs(sigmoid(4 * 0.5) - 0.5)
    assert np.isclose(leak["entanglement"], expected, atol=1e-4) and leak["category_kept"] == 0.0


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    source = MODELS / "fashion-mnist"
    if not (source / "manifest.json").is_file():
        pytest.skip("no shipped fashion-mnist bundle")
    return Path(shutil.copytree(source, tmp_path / "fashion-mnist"))


def test_directions_written_to_a_bundle_verify(bundle_copy: Path) -> None:
    bundle = load_bundle(bundle_copy)
    size = bundle.manifest.latent.size
    rng = np.random.default_rng(0)
    rows = [{"class": c} for c in ["shirt", "dress", "bag"] * 100]
    latents = rng.normal(0, 0.3, size=(len(rows), size)).astype(np.float32)
    latents[[r["class"] == "dress" for r in rows], 0] += 3.0
    specs = [DirectionSpec("shirt_to_dress", "shirt → dress", lambda r: r["class"] == "dress",
                           lambda r: r["class"] == "shirt")]  # fmt: skip
    result, summary = store_directions(bundle, latents, rows, specs, n_components=2, command="pytest")
    reloaded = load_bundle(bundle_copy)  # sha256 of every file, nothing unlisted (old directions removed)
    names = set(reloaded.manifest.directions)
    assert names == {"shirt_to_dress", "svm_shirt_to_dress", "pca_0", "pca_1", "sefa_0", "sefa_1"} == set(summary)
    assert all(re.match(DIRECTION_NAME_PATTERN, n) for n in names)
    assert sorted(p.name for p in (bundle_copy / "directions").iterdir()) == sorted(f"{n}.npy" for n in names)
    vectors = {n: np.load(reloaded.path(d.file)) for n, d in reloaded.manifest.directions.items()}
    eq9 = vectors["shirt_to_dress"]
    assert all(v.shape == (size,) and v.dtype == np.float32 for v in vectors.values())
    assert np.isclose(np.linalg.norm(vectors["svm_shirt_to_dress"]), np.linalg.norm(eq9), rtol=1e-5)
    # points to the dress side (max-margin in 64-d from 200 points also leans on noise dimensions: cos ≈ 0.85)
    assert vectors["svm_shirt_to_dress"][0] > 0.8 * np.linalg.norm(eq9)
    for kind in ("pca", "sefa"):
        a, b = vectors[f"{kind}_0"], vectors[f"{kind}_1"]
        assert np.isclose(np.linalg.norm(a), np.linalg.norm(eq9), rtol=1e-5)  # mean eq. 9 norm (one vector here)
        assert abs(a @ b) < 1e-4 * np.linalg.norm(a) ** 2  # orthogonal as stored
    sefa = sefa_directions(generator_first_layer(reloaded), 1)[0][0]
    assert np.allclose(vectors["sefa_0"] / np.linalg.norm(vectors["sefa_0"]), sefa, atol=1e-5)
    methods = {n: d.method for n, d in reloaded.manifest.directions.items()}
    assert "eq. 9" in methods["shirt_to_dress"] and "SVM" in methods["svm_shirt_to_dress"]
    assert "PCA" in methods["pca_0"] and "SeFa" in methods["sefa_0"]
    assert reloaded.manifest.training.commands[-1] == "pytest"
    assert result.manifest.directions["svm_shirt_to_dress"].counts == {"with": 100, "without": 100}
    with pytest.raises(ValueError, match="kinds"):
        store_directions(bundle, latents, rows, specs, kinds=("lda",))
