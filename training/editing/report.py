"""The editing page: tables of flip rate / entanglement per direction, and the figures (IJCV Fig. 15 and 16:
latent walks z = α ẑ1 + (1 − α) ẑ2 in WALK_STEPS steps between test pairs, rows of test images with input |
reconstruction | + each direction), and the strength sweep plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dfi_core.preprocessing import to_model_range
from training.core.plotting import pyplot
from training.editing.directions import UNSUPERVISED_PREFIXES
from training.editing.editor import Editor

WALK_STEPS = 8


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
