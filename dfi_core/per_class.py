"""Per-class reconstruction scores and the flag rule: the ICLR paper's GAN metric (reconstruction error of unseen
test images through the inverter) broken down by label, so that it says *which* classes a GAN misses.

Shared by `python -m training evaluate gan-metric` and the service's metric jobs with `"per_class": true`, so a
class's number is the same computation on either path. numpy only (the service's worker has no scipy).

Inputs are per-image values (any metric of `dfi_core.metrics`), the true labels, and optionally per-image
features of the real images and of their reconstructions (the classifier's logits in the service, or its
penultimate features in the CLI with `--classifier`). Per-class summaries are computed from the per-image values
themselves — never means of means — so they are exact whatever chunking produced the values.

FD per class: the Fréchet distance (IJCV eq. 6) between the real images of a class and their reconstructions.
FD is biased upwards at small n (its expectation falls roughly like 1/n; Chong & Forsyth 2020), so every class
uses the *same* n: the first `n_per_class` images of each class in input order (default: the smallest class's
count). Values are comparable between classes of one result, not to FDs of another n.

The flag rule (`flag_classes`), robust z-scores over the class means of one metric:
    z_c = s · (m_c − median_k m_k) / max(1.4826 · MAD_k(m_k), floor)        s = +1 higher-is-better, −1 otherwise
    class c is flagged when z_c < −k,   k = FLAG_K = 3.5   (classes with ≥ MIN_CLASS_N = 10 images only)
Why median/MAD and not mean ± k·std: with 10 classes, a class's ordinary z-score is bounded by (n−1)/√n = 2.85
(Shiffler 1988), so a "3 σ" rule could never flag anything, and a dropped class inflates the std that should
expose it (masking). The median and MAD ignore up to 4 of 10 outlying classes (50 % breakdown point); 1.4826
makes the MAD a consistent std estimate for normal data; k = 3.5 is Iglewicz & Hoaglin's (1993) cut-off for the
modified z-score. The floor (FLAG_FLOORS, in the metric's units) keeps a near-zero MAD — classes that agree
closely — from flagging a difference nobody would call a dropped mode. A `reference` (the same result for a GAN
trusted to cover every class) replaces m_c by m_c − ref_c, which removes the classes' own difficulty (bags and
sandals reconstruct worse than trousers under any G): the rule then flags what *this* G lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dfi_core.metrics import summarize

FLAG_K = 3.5
MAD_TO_STD = 1.4826
FLAG_METRIC = "psnr"  # the ICLR metric's score; `flagged` is by this one, `flagged_by` by every metric present
# +1: higher is better (a missed class scores low); −1: lower is better. latent_norm has no better direction.
DIRECTION = {"psnr": 1, "ssim": 1, "ms_ssim": 1, "class_consistency": 1, "mse": -1, "fd": -1}
# The least robust std each metric's flags assume: 0.25 dB PSNR → at k = 3.5 a class must be ≥ 0.875 dB below
# the median; SSIM/MS-SSIM 0.01; class-consistency 2.5 points; FD 10 % of the median class FD (FD has no fixed
# unit: it scales with the feature space), applied in `flag_classes`.
FLAG_FLOORS = {"psnr": 0.25, "ssim": 0.01, "ms_ssim": 0.01, "class_consistency": 0.025, "mse": 1e-4}
FD_RELATIVE_FLOOR = 0.1
# A class with fewer test images than this is reported but neither flagged nor part of the median / MAD, and gets
# no FD (emoji's "Component" category has 2 test images: its mean is noise, and FD at n = 2 is meaningless).
MIN_CLASS_N = 10
RULE = (
    "flagged when z_c = s·(m_c − median m)/max(1.4826·MAD(m), floor) < −k over the class means m "
    f"(s = +1 if higher is better), k = {FLAG_K}; with a reference, m_c − ref_c in place of m_c"
)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between Gaussians fitted to feature sets a [N, D] and b [M, D], in float64 without scipy:
    Tr((Σ₁Σ₂)^{1/2}) = Σ √λ of S Σ₂ S with S = Σ₁^{1/2} (symmetric PSD, so eigvalsh applies and the square
    root of a near-singular product never turns complex). Agrees with scipy's sqrtm version (tests)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or min(len(a), len(b)) < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two [N ≥ 2, D] feature sets of one D, got {a.shape} and {b.shape}")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root @ s2 @ root
    trace_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_covmean)


def class_indices(labels: np.ndarray, classes: int) -> list[np.ndarray]:
    """Each class's image indices, in input order."""
    labels = np.asarray(labels)
    return [np.flatnonzero(labels == c) for c in range(classes)]


def per_class_fd(real: np.ndarray, fake: np.ndarray, labels: np.ndarray, classes: int,
                 n_per_class: int | None = None) -> tuple[list[float | None], int]:  # fmt: skip
    """FD of each class's first n_per_class real images vs their reconstructions (None for a class with fewer
    than n images). n defaults to the smallest count among classes with ≥ MIN_CLASS_N images (0 and no FD when
    there is none); a given n must be ≥ 2."""
    groups = class_indices(labels, classes)
    present = [len(g) for g in groups if len(g) >= MIN_CLASS_N]
    if n_per_class is None and not present:  # too few images of every class: no FD rather than a failed job
        return [None] * classes, 0
    n = n_per_class if n_per_class is not None else min(present)
    if n < 2:
        raise ValueError(f"FD per class needs n_per_class ≥ 2 images in some class (≥ {MIN_CLASS_N} by default)")
    values = [frechet_distance(real[g[:n]], fake[g[:n]]) if len(g) >= n else None for g in groups]
    return values, n


def flag_classes(means: Mapping[str, float | None], metric: str, k: float = FLAG_K,
                 reference: Mapping[str, float | None] | None = None,
                 counts: Mapping[str, int] | None = None) -> dict[str, Any]:  # fmt: skip
    """The rule of the module docstring over class name → mean (None: not scored, never flagged; with `counts`,
    classes under MIN_CLASS_N images are left out too)."""
    direction = DIRECTION.get(metric)
    names = [c for c, m in means.items() if m is not None and np.isfinite(m)
             and (counts is None or counts.get(c, 0) >= MIN_CLASS_N)
             and (reference is None or (reference.get(c) is not None and np.isfinite(reference[c])))]  # fmt: skip
    out: dict[str, Any] = {"metric": metric, "k": k, "median": None, "scale": None, "z": {}, "flagged": []}
    if direction is None or len(names) < 3:  # no better direction, or too few classes for a median and a MAD
        return out
    values = np.array([means[c] - (reference[c] if reference is not None else 0.0) for c in names], np.float64)
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    floor = FLAG_FLOORS.get(metric, 0.0)
    if metric == "fd":
        floor = FD_RELATIVE_FLOOR * float(np.median([means[c] for c in names]))
    scale = max(MAD_TO_STD * mad, floor, 1e-12)
    z = {c: float(direction * (v - median) / scale) for c, v in zip(names, values, strict=True)}
    out.update(median=median, scale=scale, z=z, flagged=[c for c in names if z[c] < -k])
    return out


def per_class_report(values: Mapping[str, np.ndarray], labels: np.ndarray, class_names: Sequence[str],
                     real_features: np.ndarray | None = None, fake_features: np.ndarray | None = None,
                     fd_n: int | None = None, fd_features: str | None = None, k: float = FLAG_K,
                     reference: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """The fixed per-class result of the CLI and of metric jobs:

        classes     class names in label order
        by_class    name → {"label", "n", <metric>: {"mean", "std", "n"} | None for each metric, "fd": float | None}
        fd          {"n_per_class", "features"} or None when no features were given
        rule        RULE, with k and the flag metric
        flags       metric → flag_classes(...) (median, scale, z per class, flagged)
        flagged     the classes flagged on FLAG_METRIC (PSNR), [] if it was not scored
        flagged_by  metric → its flagged classes
        reference   None, or the reference result's source (its by_class means were subtracted before flagging)

    `values`: metric → [N] per-image values aligned with `labels`; `reference`: another report's `by_class`."""
    labels = np.asarray(labels)
    groups = class_indices(labels, len(class_names))
    by_class: dict[str, dict[str, Any]] = {}
    for label, (name, index) in enumerate(zip(class_names, groups, strict=True)):
        entry: dict[str, Any] = {"label": label, "n": int(len(index))}
        for metric, per_image in values.items():
            entry[metric] = summarize(np.asarray(per_image)[index]) if len(index) else None
        entry["fd"] = None
        by_class[name] = entry
    fd = None
    if real_features is not None and fake_features is not None:
        fds, n = per_class_fd(real_features, fake_features, labels, len(class_names), fd_n)
        for name, value in zip(class_names, fds, strict=True):
            by_class[name]["fd"] = value
        fd = {"n_per_class": n, "features": fd_features or "unnamed"}
    flags = {}
    for metric in [*values, "fd"]:
        means = {c: (e["fd"] if metric == "fd" else (e[metric]["mean"] if e[metric] else None))
                 for c, e in by_class.items()}  # fmt: skip
        ref = None
        if reference is not None:
            ref = {c: (r.get("fd") if metric == "fd" else (r.get(metric) or {}).get("mean"))
                   for c, r in reference.items()}  # fmt: skip
        if metric in DIRECTION and any(m is not None for m in means.values()):
            flags[metric] = flag_classes(means, metric, k, ref, {c: e["n"] for c, e in by_class.items()})
    return {
        "classes": list(class_names),
        "by_class": by_class,
        "fd": fd,
        "rule": {
            "text": RULE,
            "k": k,
            "metric": FLAG_METRIC,
            "scale": "1.4826·MAD",
            "floors": FLAG_FLOORS,
            "fd_relative_floor": FD_RELATIVE_FLOOR,
            "min_class_n": MIN_CLASS_N,
        },  # fmt: skip
        "flags": flags,
        "flagged": flags[FLAG_METRIC]["flagged"] if FLAG_METRIC in flags else [],
        "flagged_by": {metric: flag["flagged"] for metric, flag in flags.items()},
        "reference": None,
    }
