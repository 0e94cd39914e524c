"""Latent editing, measured: flip rate and entanglement of every direction a bundle ships (IJCV sec. 4.5–4.6).

For each supervised direction v (eq. 9 `<recipe>` and InterFaceGAN `svm_<recipe>`) the held-out test images
*without* the attribute (the recipe's `without` side, at most n of them) are inverted with the bundle's invert.onnx,
moved to ẑ + s·v for s in {0} ∪ strengths and generated with generator.onnx; a judge then scores the edits:

    flip rate     the fraction of edited images the judge assigns the target attribute / class; s = 0 is the
                  reconstruction, the baseline the edit has to beat
    entanglement  mean |Δ| (edited vs reconstruction) of the judge's scores of the *other* attributes
    kept          the fraction whose category (the bundle's classifier.onnx) is unchanged by the edit

Judges: for emoji the multi-label attribute classifier of `training.classifiers.attributes` (scores: P(woman),
darkness =
(E[tone] − 1)/4, P(<style> hair)); for Fashion-MNIST the bundle's own classifier.onnx (scores: class
probabilities; entanglement over the classes other than source and target).

Unsupervised directions (`pca_<i>`, `sefa_<i>`) have no target: they are applied at ±1 and ±2 to test people
(emoji) or random test images (Fashion-MNIST), and the table says which score each moves most.

Figures (IJCV Fig. 15 and 16): latent walks z = α ẑ1 + (1 − α) ẑ2 in 8 steps between test pairs, and rows of
test images with input | reconstruction | + each direction.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dfi_core.bundle import load_bundle
from dfi_core.preprocessing import to_model_range
from training.editing.directions import UNSUPERVISED_PREFIXES, attribute_rows, direction_specs, load_direction_data
from training.editing.editor import Editor
from training.editing.judges import (
    Judge,
    Target,
    emoji_judge,
    emoji_targets,
    entanglement,
    fashion_judge,
    fashion_targets,
    flip_rate,
)
from training.editing.report import _figures, sweep_plot, tables

UNSUPERVISED_STRENGTHS = (-2.0, -1.0, 1.0, 2.0)


def _pick(index: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(index, n, replace=False)) if len(index) > n else index


def _cosines(vectors: dict[str, np.ndarray], name: str, references: list[str]) -> tuple[str, float]:
    """The eq. 9 vector most aligned with `name` (largest |cos|) and the signed cosine."""
    v = vectors[name] / np.linalg.norm(vectors[name])
    best = max(references, key=lambda r: abs(float(v @ vectors[r]) / np.linalg.norm(vectors[r])))
    return best, float(v @ vectors[best] / np.linalg.norm(vectors[best]))


def evaluate_edits(
    bundle_dir: Path,
    attributes: Path | None,
    out: Path,
    n: int = 200,
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0),
    seed: int = 0,
    threads: int | None = 1,
    command: str | None = None,
) -> dict[str, Any]:
    """Measure every direction of the bundle; write out/<dataset>.json, out/<dataset>-tables.md and figures."""
    bundle = load_bundle(bundle_dir)
    dataset = bundle.manifest.dataset.name
    if bundle.manifest.graphs.classifier is None:
        raise ValueError(f"bundle {bundle.name!r} has no classifier graph (python -m training export classifier)")
    editor = Editor(bundle, threads)
    if dataset == "emoji":
        if attributes is None:
            raise ValueError("emoji edits are judged by the attribute classifier: pass --attributes")
        judge, targets = emoji_judge(attributes), emoji_targets()
    elif dataset == "fashion-mnist":
        judge = fashion_judge(editor.classifier)
        targets = fashion_targets(list(bundle.manifest.dataset.class_names))
    else:
        raise ValueError(f"no edit evaluation for data set {dataset!r}")
    specs = {spec.name: spec for spec in direction_specs(dataset)}
    test = load_direction_data(dataset, "test")
    rows = attribute_rows(test)
    rng = np.random.default_rng(seed)
    vectors = {name: np.load(bundle.path(d.file)).astype(np.float32) for name, d in bundle.manifest.directions.items()}
    latents = editor.invert(test.images)
    recon = editor.generate(latents)
    result: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "dataset": dataset,
        "n_max": n,
        "strengths": list(strengths),
        "seed": seed,
        "command": command,
        "judge": judge.names,
    }
    result["judge_check"] = _judge_check(dataset, judge, editor, test, recon)
    supervised, unsupervised = {}, {}
    for name, vector in vectors.items():
        recipe = name.removeprefix("svm_")
        if name.startswith(UNSUPERVISED_PREFIXES):
            unsupervised[name] = _unsupervised(
                name, vector, latents, rows, dataset, editor, judge, n, rng, vectors, specs
            )
        elif recipe in targets:
            source = np.array(
                [i for i, r in enumerate(rows) if specs[recipe].without(r) and not specs[recipe].with_(r)]
            )
            index = _pick(source, n, rng)
            supervised[name] = _supervised(
                name, recipe, vector, latents[index], editor, judge, targets[recipe], strengths, vectors
            )
            supervised[name]["available"] = len(source)
    result["supervised"], result["unsupervised"] = supervised, unsupervised
    out.mkdir(parents=True, exist_ok=True)
    result["figures"] = _figures(dataset, out, editor, test, rows, latents, vectors, specs)
    sweep_plot(result, out / f"{dataset}-sweep.png")
    result["tables"] = tables(result)
    (out / f"{dataset}.json").write_text(json.dumps({k: v for k, v in result.items() if k != "tables"}, indent=2))
    (out / f"{dataset}-tables.md").write_text(result["tables"])
    return result


def _judge_check(dataset: str, judge: Judge, editor: Editor, test: Any, recon: np.ndarray) -> dict[str, Any]:
    """How far the judge can be trusted on generated images: its accuracy on real test images vs reconstructions."""
    real_images = to_model_range(test.images)
    if dataset == "fashion-mnist":
        real, rec = judge.score(real_images).argmax(1), judge.score(recon).argmax(1)
        return {
            "n": len(test.labels),
            "accuracy_real": round(float(np.mean(real == test.labels)), 4),
            "accuracy_reconstruction": round(float(np.mean(rec == test.labels)), 4),
        }
    from training.classifiers.attributes import attribute_labels, head_scores

    assert judge.probabilities is not None
    labels = attribute_labels(test.attributes)
    return {
        "n": len(test.labels),
        "real": head_scores(judge.probabilities(real_images), labels),
        "reconstruction": head_scores(judge.probabilities(recon), labels),
    }


def _supervised(
    name: str,
    recipe: str,
    vector: np.ndarray,
    z: np.ndarray,
    editor: Editor,
    judge: Judge,
    target: Target,
    strengths: tuple[float, ...],
    vectors: dict[str, np.ndarray],
) -> dict[str, Any]:
    base_images = editor.generate(z)
    base = judge.score(base_images)
    base_category = editor.category(base_images)
    others = [c for c in judge.columns() if c != target.column and c not in target.exclude]
    sweep = {"0": {"flip_rate": round(flip_rate(base, target.decision), 4)}}
    for s in strengths:
        images = editor.generate(z + s * vector)
        scores = judge.score(images)
        sweep[f"{s:g}"] = {
            "flip_rate": round(flip_rate(scores, target.decision), 4),
            "target_score_change": round(float((scores[:, target.column] - base[:, target.column]).mean()), 4),
            "entanglement": round(entanglement(base, scores, others), 4),
            "category_kept": round(float(np.mean(editor.category(images) == base_category)), 4),
        }
    method = "svm" if name.startswith("svm_") else "eq9"
    out = {
        "recipe": recipe,
        "method": method,
        "n": len(z),
        "target": target.label,
        "norm": round(float(np.linalg.norm(vector)), 4),
        "sweep": sweep,
    }
    if method == "svm" and recipe in vectors:
        a, b = vector, vectors[recipe]
        out["cosine_with_eq9"] = round(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), 4)
    return out


def _unsupervised(
    name: str,
    vector: np.ndarray,
    latents: np.ndarray,
    rows: list[dict[str, Any]],
    dataset: str,
    editor: Editor,
    judge: Judge,
    n: int,
    rng: np.random.Generator,
    vectors: dict[str, np.ndarray],
    specs: dict[str, Any],
) -> dict[str, Any]:
    if dataset == "emoji":
        from training.classifiers.attributes import is_person

        pool = np.array([i for i, r in enumerate(rows) if is_person(r["gender"], r["subcategory"])])
    else:
        pool = np.arange(len(rows))
    index = _pick(pool, n, rng)
    z = latents[index]
    base_images = editor.generate(z)
    base, base_category = judge.score(base_images), editor.category(base_images)
    per_strength = {}
    for s in UNSUPERVISED_STRENGTHS:
        images = editor.generate(z + s * vector)
        scores, category = judge.score(images), editor.category(images)
        columns = judge.columns()
        delta = (scores - base).mean(0)
        order = sorted(columns, key=lambda c: -abs(delta[c]))
        entry = {
            "mean_change": {judge.names[c]: round(float(delta[c]), 4) for c in order},
            "mean_abs_change": round(float(np.abs(scores - base)[:, columns].mean()), 4),
            "category_kept": round(float(np.mean(category == base_category)), 4),
        }
        if dataset == "fashion-mnist":
            moves = Counter(
                (judge.names[a], judge.names[b])
                for a, b in zip(base.argmax(1), scores.argmax(1), strict=True)
                if a != b
            )
            entry["top_class_changes"] = [[f"{a} → {b}", c] for (a, b), c in moves.most_common(3)]
        per_strength[f"{s:g}"] = entry
    nearest, cosine = _cosines(vectors, name, [r for r in specs if r in vectors])
    top = next(iter(per_strength["1"]["mean_change"].items()))
    return {
        "n": len(z),
        "norm": round(float(np.linalg.norm(vector)), 4),
        "moves_most": top[0],
        "moves_most_change": top[1],
        "nearest_eq9": nearest,
        "cosine_nearest_eq9": round(cosine, 4),
        "strengths": per_strength,
    }
