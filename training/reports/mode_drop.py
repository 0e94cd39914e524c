"""Issue 23's mode-drop study: does the per-class reconstruction metric find the classes a GAN never saw?

    bash scripts/mode_drop_study.sh                     # the GANs, their DFI inverters, bundles and scores
    python -m training report mode-drop --runs runs/mode-drop --docs docs/results/mode-drop

Reads, per variant folder `RUNS/<name>/`: `gan/config.json` (which classes were left out: `data.exclude_classes`),
`sample_fd.json` (sample FD and the classifier's class histogram of 10,000 samples) and
`RUNS/results/<name>-per-class.json` (`python -m training evaluate gan-metric`, every variant but the reference
scored with `--reference` = the reference's JSON, so flags are on the per-class *difference* to a GAN that saw
every class). The reference is the variant that left nothing out.

Detectors compared, each a set of flagged classes per variant:
- the per-class reconstruction metric, one detector per metric (PSNR — the ICLR metric — SSIM, class-consistency,
  FD per class), flagged by dfi_core.per_class's rule (robust z < −3.5 of the difference to the reference);
- sample counts: the data set's classifier on 10,000 samples; a class is flagged when it gets fewer than
  `COUNT_RATIO` × the reference GAN's count (stated here because nothing in the papers fixes it);
- the aggregate sample FD, which says how much but never which: it gets a column, not a recall.
Recall = |flagged ∩ dropped| / |dropped|; false alarms = |flagged − dropped|.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from training.core.plotting import pyplot

DETECTORS = ("psnr", "ssim", "class_consistency", "fd")
COUNT_RATIO = 0.5  # a class is "missing from the samples" below half the reference GAN's count for it


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def load_variants(runs: Path) -> dict[str, dict[str, Any]]:
    """name → {dropped, samples, per_class} for every finished variant under `runs`."""
    variants = {}
    for folder in sorted(p for p in runs.iterdir() if (p / "gan" / "config.json").is_file()):
        metric = runs / "results" / f"{folder.name}-per-class.json"
        samples = folder / "sample_fd.json"
        if not (metric.is_file() and samples.is_file()):
            continue
        config = _read(folder / "gan" / "config.json")
        variants[folder.name] = {
            "dropped_index": list(config["data"].get("exclude_classes") or []),
            "gan_steps": config["steps"],
            "samples": _read(samples),
            "metric": _read(metric),
        }
    if not variants:
        raise FileNotFoundError(f"no finished variant under {runs} (need gan/config.json, sample_fd.json and "
                                f"results/<name>-per-class.json)")  # fmt: skip
    for v in variants.values():
        names = v["metric"]["per_class"]["classes"]
        v["dropped"] = [names[i] for i in v["dropped_index"]]
    return variants


def _score(flagged: list[str], dropped: list[str], z: dict[str, float] | None = None) -> dict[str, Any]:
    """Recall and false alarms of a flag set; with the detector's z per class, also each dropped class's rank among
    all classes from the most extreme (1 = the class the detector ranks worst), a threshold-free measure."""
    hits = sorted(set(flagged) & set(dropped), key=flagged.index)
    score = {"flagged": flagged, "recall": len(hits) / len(dropped) if dropped else None,
             "false_alarms": sorted(set(flagged) - set(dropped))}  # fmt: skip
    if z:
        order = sorted(z, key=z.get)  # most negative z first
        score["dropped_ranks"] = {c: order.index(c) + 1 for c in dropped if c in z}
        score["dropped_z"] = {c: round(z[c], 2) for c in dropped if c in z}
    return score


def _overall_psnr(per_class: dict[str, Any]) -> float:
    """The aggregate ICLR metric of the variant: the gan-metric JSON's overall mean, else the n-weighted class mean."""
    if "overall" in per_class:
        return per_class["overall"]["psnr"]["mean"]
    entries = [e for e in per_class["by_class"].values() if e.get("psnr")]
    return sum(e["psnr"]["mean"] * e["psnr"]["n"] for e in entries) / sum(e["psnr"]["n"] for e in entries)


def study(runs: Path) -> dict[str, Any]:
    variants = load_variants(runs)
    references = [name for name, v in variants.items() if not v["dropped"]]
    if len(references) != 1:
        raise ValueError(f"need exactly one variant that left no class out, found {references or 'none'}")
    reference = variants[references[0]]
    ref_counts = reference["samples"]["sample_class_histogram"]
    classes = reference["metric"]["per_class"]["classes"]
    rows = {}
    for name, v in variants.items():
        per_class = v["metric"]["per_class"]
        counts = v["samples"]["sample_class_histogram"]
        low = [c for c, n, r in zip(classes, counts, ref_counts, strict=True) if n < COUNT_RATIO * r]
        flags = per_class["flags"]
        detectors = {m: _score(flags.get(m, {}).get("flagged", []), v["dropped"], flags.get(m, {}).get("z"))
                     for m in DETECTORS}  # fmt: skip
        # Sample counts ranked by their ratio to the reference's (lowest first), as a pseudo-z for the ranks.
        ratio = {c: n / max(r, 1) for c, n, r in zip(classes, counts, ref_counts, strict=True)}
        detectors["sample_counts"] = _score(low if name != references[0] else [], v["dropped"],
                                            ratio if name != references[0] else None)  # fmt: skip
        by_class = per_class["by_class"]
        rows[name] = {
            "dropped": v["dropped"],
            "gan_steps": v["gan_steps"],
            "reference": per_class.get("reference"),
            "sample_fd": v["samples"]["fd_samples_vs_test"],
            "sample_fd_n": v["samples"]["n_samples"],
            "classifier_is": (v["samples"].get("classifier_is") or {}).get("mean"),
            "ms_ssim_diversity": (v["samples"].get("ms_ssim_diversity") or {}).get("mean"),
            "sample_counts": dict(zip(classes, counts, strict=True)),
            "recon_psnr": _overall_psnr(per_class),
            "recon_psnr_per_class": {c: by_class[c]["psnr"]["mean"] for c in classes},
            "psnr_z": per_class["flags"]["psnr"]["z"],
            "detectors": detectors,
        }
    return {"reference": references[0], "classes": classes, "count_ratio": COUNT_RATIO, "variants": rows,
            "n_test": reference["metric"]["n"]}  # fmt: skip


def plot_study(result: dict[str, Any], path: Path) -> Path:
    """One panel per variant: per-class PSNR of the reconstructions minus the reference's (the reference's panel:
    its absolute per-class PSNR); dropped classes red, flagged classes outlined black."""
    plt = pyplot()
    names = list(result["variants"])
    classes = result["classes"]
    ref = result["variants"][result["reference"]]["recon_psnr_per_class"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.4), sharey=False)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        row = result["variants"][name]
        is_ref = name == result["reference"]
        values = [row["recon_psnr_per_class"][c] - (0 if is_ref else ref[c]) for c in classes]
        flagged = set(row["detectors"]["psnr"]["flagged"])
        colours = ["tab:red" if c in row["dropped"] else "tab:blue" for c in classes]
        edges = ["black" if c in flagged else "none" for c in classes]
        ax.bar(range(len(classes)), values, color=colours, edgecolor=edges, linewidth=1.8)
        ax.set_xticks(range(len(classes)), [c.split("/")[0] for c in classes], rotation=70, fontsize=7)
        dropped = ", ".join(row["dropped"]) or "none"
        ax.set_title(f"{name}: dropped {dropped}", fontsize=8)
        ax.set_ylabel("PSNR (dB)" if is_ref else "ΔPSNR vs reference (dB)", fontsize=8)
        ax.axhline(0, color="grey", linewidth=0.5)
    fig.suptitle("Per-class reconstruction PSNR (red: classes left out of G's training; outlined: flagged)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cell(score: dict[str, Any]) -> str:
    """recall · false alarms (their names) · the dropped classes' ranks (1 = ranked worst of all classes)."""
    if score["recall"] is None:
        return f"{len(score['false_alarms'])} false ({', '.join(score['false_alarms']) or '–'})"
    cell = f"{score['recall']:.2f} · {len(score['false_alarms'])} false"
    if score["false_alarms"]:
        cell += f" ({', '.join(score['false_alarms'])})"
    if score.get("dropped_ranks"):
        cell += " · rank " + "/".join(str(r) for r in score["dropped_ranks"].values())
    return cell


def write_report(result: dict[str, Any], runs: Path, docs: Path) -> list[Path]:
    docs.mkdir(parents=True, exist_ok=True)
    written = [docs / "mode-drop.json", plot_study(result, docs / "mode-drop-psnr.png")]
    written[0].write_text(json.dumps(result, indent=1) + "\n")
    for name in result["variants"]:  # the final sample grid of each GAN, next to the numbers
        grids = sorted((runs / name / "gan" / "samples").glob("step-*.png"))
        if grids:
            written.append(Path(shutil.copyfile(grids[-1], docs / f"{name}-samples.png")))
    lines = [
        "| variant | dropped | sample FD (n) | classifier IS | MS-SSIM div. | samples of dropped classes (ref.) | "
        "recon PSNR | PSNR | SSIM | class-cons. | FD per class | sample counts |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref_counts = result["variants"][result["reference"]]["sample_counts"]
    for name, row in result["variants"].items():
        counts = ", ".join(f"{c} {row['sample_counts'][c]} ({ref_counts[c]})" for c in row["dropped"]) or "–"
        cells = [_cell(row["detectors"][d]) for d in (*DETECTORS, "sample_counts")]
        dropped = ", ".join(row["dropped"]) or "none (reference)"
        scores = " | ".join("–" if row[k] is None else f"{row[k]:.3f}" for k in ("classifier_is", "ms_ssim_diversity"))
        head = (f"| {name} | {dropped} | {row['sample_fd']:.2f} ({row['sample_fd_n']}) | {scores} | {counts} | "
                f"{row['recon_psnr']:.2f}")  # fmt: skip
        lines.append(head + " | " + " | ".join(cells) + " |")
    table = docs / "mode-drop-table.md"
    table.write_text("\n".join(lines) + "\n")
    written.append(table)
    return written
