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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfi_core.bundle import Bundle, load_bundle
from dfi_core.preprocessing import to_model_range
from training.core.plotting import pyplot
from training.editing.directions import UNSUPERVISED_PREFIXES, attribute_rows, direction_specs, load_direction_data

WALK_STEPS = 8
UNSUPERVISED_STRENGTHS = (-2.0, -1.0, 1.0, 2.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def flip_rate(scores: np.ndarray, target: Callable[[np.ndarray], np.ndarray]) -> float:
    """Fraction of images whose judge scores [N, K] meet the target decision (a boolean [N] of the scores)."""
    return float(np.mean(target(scores))) if len(scores) else float("nan")


def entanglement(before: np.ndarray, after: np.ndarray, others: list[int]) -> float:
    """Mean absolute change of the other attributes' scores: mean over images and the columns `others`."""
    return float(np.abs(after[:, others] - before[:, others]).mean()) if others else 0.0


@dataclass
class Judge:
    """Scores [N, K] in [0, 1] of images [N, C, H, W] in [-1, 1]; `names` are the K columns, `attributes` the
    columns entanglement is measured over (default: all); `probabilities` the raw head outputs (emoji)."""

    names: list[str]
    score: Callable[[np.ndarray], np.ndarray]
    attributes: list[int] | None = None
    probabilities: Callable[[np.ndarray], np.ndarray] | None = None

    def columns(self) -> list[int]:
        return self.attributes if self.attributes is not None else list(range(len(self.names)))


@dataclass
class Target:
    """What a supervised recipe should produce: the column it moves and the decision on the scores."""

    column: int
    decision: Callable[[np.ndarray], np.ndarray]
    label: str
    exclude: tuple[int, ...] = ()  # further columns left out of entanglement (the source class)


def emoji_judge(checkpoint: Path) -> Judge:
    import torch

    from training.classifiers.attributes import HAIR_STYLES, load_attributes, predict

    model, _ = load_attributes(checkpoint)

    def probabilities(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return predict(model, images.astype(np.float32))

    def score(images: np.ndarray) -> np.ndarray:
        p = probabilities(images)
        darkness = (p[:, 1:6] @ np.arange(5, dtype=np.float64)) / 4.0
        return np.column_stack([p[:, 0], darkness, p[:, 6:11], p[:, 5]])

    names = ["woman", "darkness", *(f"{h}_hair" for h in HAIR_STYLES), "tone5"]
    return Judge(names, score, attributes=list(range(7)), probabilities=probabilities)


def emoji_targets() -> dict[str, Target]:
    """Recipe name → target: P(woman) > ½; P(tone 5) > ½; P(<style> hair) > ½.

    Entanglement is over woman, darkness = (E[tone] − 1)/4 and the five hair probabilities, less the target's own.
    """
    targets = {"man_to_woman": Target(0, lambda s: s[:, 0] > 0.5, "P(woman) > 0.5")}
    targets["skin_light_to_dark"] = Target(7, lambda s: s[:, 7] > 0.5, "P(tone 5) > 0.5", exclude=(1,))
    for i, style in enumerate(("bald", "red", "white", "curly", "blond")):
        name = "bald" if style == "bald" else f"{style}_hair"
        targets[name] = Target(2 + i, lambda s, c=2 + i: s[:, c] > 0.5, f"P({style} hair) > 0.5")
    return targets


def fashion_judge(classifier: Any) -> Judge:
    from dfi_core.datasets import FASHION_MNIST_CLASSES

    return Judge(list(FASHION_MNIST_CLASSES), lambda images: softmax(classifier(images.astype(np.float32))))


def fashion_targets(class_names: list[str]) -> dict[str, Target]:
    """Recipe → target: the classifier's decision is the class the recipe's `with_` side selects."""
    targets = {}
    for spec in direction_specs("fashion-mnist"):
        t = next(i for i, c in enumerate(class_names) if spec.with_({"class": c}))
        s = next(i for i, c in enumerate(class_names) if spec.without({"class": c}))
        targets[spec.name] = Target(t, lambda p, t=t: p.argmax(1) == t, f"argmax = {class_names[t]}", exclude=(s,))
    return targets


class Editor:
    """invert.onnx / generator.onnx / classifier.onnx of a bundle, batched."""

    def __init__(self, bundle: Bundle, threads: int | None = 1, batch: int = 256) -> None:
        kwargs = {"providers": ["CPUExecutionProvider"], "intra_op_threads": threads}
        self.invert_graph = bundle.open_graph("invert", **kwargs)
        self.generator = bundle.open_graph("generator", **kwargs)
        self.classifier = bundle.open_graph("classifier", **kwargs)
        self.batch = batch

    def _run(self, graph: Any, x: np.ndarray) -> np.ndarray:
        return np.concatenate([graph(x[i : i + self.batch]) for i in range(0, len(x), self.batch)])

    def invert(self, images_uint8: np.ndarray) -> np.ndarray:
        return self._run(self.invert_graph, to_model_range(images_uint8))

    def generate(self, z: np.ndarray) -> np.ndarray:
        return self._run(self.generator, z.astype(np.float32))

    def category(self, images: np.ndarray) -> np.ndarray:
        return self._run(self.classifier, images.astype(np.float32)).argmax(1)


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


def _judge_table(result: dict[str, Any]) -> list[str]:
    check = result["judge_check"]
    if result["dataset"] == "fashion-mnist":
        return [
            f"Judge (the bundle's classifier.onnx) on {check['n']} test images: accuracy {check['accuracy_real']:.3f} "
            f"on the real images, {check['accuracy_reconstruction']:.3f} on their DFI reconstructions G(ẑ).",
            "",
        ]
    lines = [
        f"Judge (attribute classifier) on the emoji test split ({check['n']} images): real images vs their DFI "
        "reconstructions G(ẑ).",
        "",
        "| head | images | positives | accuracy (real) | accuracy (reconstruction) |",
        "|---|---|---|---|---|",
    ]
    for head, real in check["real"].items():
        rec = check["reconstruction"][head]
        if head == "tone":
            lines.append(
                f"| tone (5-way) | {real['n']} | – | {real['accuracy_5way']:.3f} | {rec['accuracy_5way']:.3f} |"
            )
            lines.append(
                f"| tone 1 vs 5 | {real['n_light_dark']} | – | {real['accuracy_1_vs_5']:.3f} | "
                f"{rec['accuracy_1_vs_5']:.3f} |"
            )
            continue
        positives = real.get("positives", "–")
        lines.append(f"| {head} | {real['n']} | {positives} | {real['accuracy']:.3f} | {rec['accuracy']:.3f} |")
        if real.get("sensitivity") is not None:
            lines.append(
                f"| {head} sensitivity | {positives} | {positives} | {real['sensitivity']:.3f} | "
                f"{rec['sensitivity']:.3f} |"
            )
    return [*lines, ""]


def tables(result: dict[str, Any]) -> str:
    """Markdown tables of a result dict: the judge, the supervised sweep (eq. 9 next to SVM), a per-method summary
    and the unsupervised directions."""
    dataset = result["dataset"]
    strengths = ["0"] + [f"{s:g}" for s in result["strengths"]]
    kept = dataset != "fashion-mnist"  # for Fashion-MNIST the category classifier is the judge itself
    lines = [f"### {dataset}: the judge", "", *_judge_table(result)]
    lines += [
        f"### {dataset}: supervised directions (held-out test images without the attribute)",
        "",
        "| direction | method | n | target | "
        + " | ".join(f"flip @ {s}" for s in strengths)
        + " | Δ target score @ 1 | entanglement @ 1 |"
        + (" category kept @ 1 |" if kept else "")
        + " cos(svm, eq. 9) |",
        "|---|---|---|---|" + "---|" * len(strengths) + "---|---|" + ("---|" if kept else "") + "---|",
    ]
    order = list(dict.fromkeys(r["recipe"] for r in result["supervised"].values()))
    rows = sorted(result["supervised"].items(), key=lambda kv: (order.index(kv[1]["recipe"]), kv[1]["method"]))
    for name, r in rows:
        at1 = r["sweep"].get("1", {})
        flips = " | ".join(f"{r['sweep'][s]['flip_rate']:.2f}" if s in r["sweep"] else "–" for s in strengths)
        cos = f"{r['cosine_with_eq9']:.2f}" if "cosine_with_eq9" in r else ""
        kept_cell = f" {at1.get('category_kept', float('nan')):.2f} |" if kept else ""
        lines.append(
            f"| `{name}` | {r['method']} | {r['n']} | {r['target']} | {flips} | "
            f"{at1.get('target_score_change', float('nan')):+.3f} | "
            f"{at1.get('entanglement', float('nan')):.3f} |{kept_cell} {cos} |"
        )
    lines += [
        "",
        f"### {dataset}: per method (mean over its directions)",
        "",
        "| method | directions | flip @ 0 | flip @ 1 | flip @ 2 | entanglement @ 1 |",
        "|---|---|---|---|---|---|",
    ]
    for method in ("eq9", "svm"):
        group = [r for r in result["supervised"].values() if r["method"] == method]
        if group:

            def mean(key: str, field: str, g: list[dict[str, Any]] = group) -> float:
                return float(np.mean([r["sweep"][key][field] for r in g if key in r["sweep"]]))

            lines.append(
                f"| {method} | {len(group)} | {mean('0', 'flip_rate'):.3f} | {mean('1', 'flip_rate'):.3f} | "
                f"{mean('2', 'flip_rate'):.3f} | {mean('1', 'entanglement'):.3f} |"
            )
    fm = dataset == "fashion-mnist"
    lines += [
        "",
        f"### {dataset}: unsupervised directions (strength ±1 = the mean eq. 9 norm)",
        "",
        "| direction | n | moves most @ +1 (mean Δ) | next | mean abs Δ @ +1 | mean abs Δ @ +2 | "
        + ("decision kept @ +1 | " if fm else "category kept @ +1 | ")
        + "nearest eq. 9 (cos) |"
        + (" top class changes @ +2 |" if fm else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if fm else ""),
    ]
    for name, r in result["unsupervised"].items():
        changes = list(r["strengths"]["1"]["mean_change"].items())
        nxt = f"{changes[1][0]} {changes[1][1]:+.3f}" if len(changes) > 1 else ""
        row = (
            f"| `{name}` | {r['n']} | {r['moves_most']} {r['moves_most_change']:+.3f} | {nxt} | "
            f"{r['strengths']['1']['mean_abs_change']:.3f} | {r['strengths']['2']['mean_abs_change']:.3f} | "
            f"{r['strengths']['1']['category_kept']:.2f} | {r['nearest_eq9']} ({r['cosine_nearest_eq9']:+.2f}) |"
        )
        if fm:
            row += " " + ", ".join(f"{a} ({c})" for a, c in r["strengths"]["2"].get("top_class_changes", [])) + " |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def labelled_grid(
    tiles: np.ndarray, path: Path, columns: list[str], rows: list[str] | None = None, scale: float | None = None
) -> Path:
    """tiles [R, K, C, H, W] in [-1, 1] → one PNG grid with column (and row) labels."""
    from training.core.plotting import image_grid

    n_rows, n_cols = tiles.shape[:2]
    grid = image_grid(tiles.reshape(n_rows * n_cols, *tiles.shape[2:]), nrow=n_cols)
    h, w = tiles.shape[-2:]
    scale = scale or (2.5 if h <= 32 else 1.25)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(grid.shape[1] * scale / 100 + 1.2, grid.shape[0] * scale / 100 + 0.6), dpi=100)
    ax.imshow(grid[:, :, 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    for j, label in enumerate(columns):
        ax.text(2 + j * (w + 2) + w / 2, -3, label, ha="left", va="bottom", fontsize=6.5, rotation=35)
    for i, label in enumerate(rows or []):
        ax.text(-3, 2 + i * (h + 2) + h / 2, label, ha="right", va="center", fontsize=6.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return path


def _first(rows: list[dict[str, Any]], rng: np.random.Generator, predicate: Callable[[dict[str, Any]], bool]) -> int:
    matches = [i for i, r in enumerate(rows) if predicate(r)]
    if not matches:
        raise ValueError("no test image matches a figure's selection")
    return int(rng.choice(matches))


def _figure_picks(dataset: str, rows: list[dict[str, Any]], rng: np.random.Generator) -> tuple[list, list]:
    """(walk pairs, rows of the attribute figure): test indices chosen at random among fixed selections."""
    if dataset == "emoji":
        from training.classifiers.attributes import is_person

        def plain(g: str, tone: int) -> Callable[[dict[str, Any]], bool]:
            return lambda r: (
                r["gender"] == g
                and r["skin_tone"] == tone
                and r["hair"] == "none"
                and is_person(r["gender"], r["subcategory"])
            )

        def cat(c: str) -> Callable[[dict[str, Any]], bool]:
            return lambda r: r["class"] == c

        pairs = [
            (plain("man", 1), plain("woman", 5)),
            (plain("man", 0), plain("woman", 0)),
            (cat("Smileys & Emotion"), cat("Animals & Nature")),
            (cat("Food & Drink"), cat("Travel & Places")),
        ]
        picks = [plain("man", 1), plain("man", 3), plain("man", 0), plain("woman", 1), plain("woman", 2),
                 plain("woman", 0)]  # fmt: skip
    else:
        pairs = [
            (lambda r, a=a: r["class"] == a, lambda r, b=b: r["class"] == b)
            for a, b in [("shirt", "dress"), ("sneaker", "ankle boot"), ("trouser", "bag"), ("t-shirt/top", "pullover")]
        ]
        picks = [
            lambda r, c=c: r["class"] == c for c in ("shirt", "sneaker", "pullover", "sandal", "t-shirt/top", "trouser")
        ]
    walk = [(_first(rows, rng, a), _first(rows, rng, b)) for a, b in pairs]
    chosen: list[int] = []
    for p in picks:
        index = _first(rows, rng, lambda r, p=p: p(r) and id(r) not in {id(rows[c]) for c in chosen})
        chosen.append(index)
    return walk, chosen


def _figures(
    dataset: str,
    out: Path,
    editor: Editor,
    test: Any,
    rows: list[dict[str, Any]],
    latents: np.ndarray,
    vectors: dict[str, np.ndarray],
    specs: dict[str, Any],
) -> list[str]:
    rng = np.random.default_rng(1)
    walk, chosen = _figure_picks(dataset, rows, rng)
    real = to_model_range(test.images)
    paths = []
    # Fig. 15: latent walks z = α ẑ1 + (1 − α) ẑ2, α from 1 to 0 in WALK_STEPS steps, real images at both ends.
    alphas = np.linspace(1.0, 0.0, WALK_STEPS)
    tiles = []
    for a, b in walk:
        z = alphas[:, None] * latents[a] + (1 - alphas[:, None]) * latents[b]
        tiles.append(np.concatenate([real[a : a + 1], editor.generate(z), real[b : b + 1]]))
    labels = ["input 1", *(f"α={x:.2f}" for x in alphas), "input 2"]
    paths.append(labelled_grid(np.stack(tiles), out / f"{dataset}-walks.png", labels))
    # Fig. 16: input | reconstruction | + each direction, for eq. 9 (strength 1 and 2) and SVM (strength 1).
    recipes = [name for name in specs if name in vectors]
    z = latents[chosen]
    for method, prefix, strength in (("eq9", "", 1.0), ("eq9", "", 2.0), ("svm", "svm_", 1.0)):
        names = [prefix + r for r in recipes if prefix + r in vectors]
        if not names:
            continue
        columns = [real[chosen], editor.generate(z)] + [editor.generate(z + strength * vectors[n]) for n in names]
        grid = np.stack(columns, axis=1)
        labels = ["input", "reconstruction", *(f"+{n}" for n in names)]
        paths.append(labelled_grid(grid, out / f"{dataset}-add-{method}-s{strength:g}.png", labels))
    # Unsupervised: each PCA / SeFa direction at −2 … +2 on two test images.
    unsup = [n for n in vectors if n.startswith(UNSUPERVISED_PREFIXES)]
    if unsup:
        steps = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
        grid = np.stack(
            [
                np.concatenate([editor.generate(latents[i] + steps[:, None] * vectors[n]) for i in chosen[::3]])
                for n in unsup
            ]
        )
        labels = [f"{s:+g}" for s in steps] * 2
        paths.append(labelled_grid(grid, out / f"{dataset}-unsupervised.png", labels, unsup))
    paths.append(out / f"{dataset}-sweep.png")  # drawn by sweep_plot once the numbers are in
    return [str(p) for p in paths]


def sweep_plot(result: dict[str, Any], path: Path) -> Path:
    """Flip rate against strength for every supervised direction: eq. 9 solid, SVM dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
    colours = {}
    for r in result["supervised"].values():
        xs = sorted(float(s) for s in r["sweep"])
        ys = [r["sweep"][f"{x:g}"]["flip_rate"] for x in xs]
        colour = colours.setdefault(r["recipe"], f"C{len(colours) % 10}")
        ax.plot(
            xs,
            ys,
            linestyle="-" if r["method"] == "eq9" else "--",
            color=colour,
            marker="o",
            markersize=3,
            label=r["recipe"] if r["method"] == "eq9" else None,
        )
    ax.set_xlabel("strength s (z + s·v); solid: eq. 9, dashed: SVM")
    ax.set_ylabel("flip rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{result['dataset']}: edits judged as the target", fontsize=9)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
