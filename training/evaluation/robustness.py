"""`python -m training evaluate robustness`: the analogue of IJCV 2020 (Bang & Shim) sec. 3.2, Figs. 2–5 — how
a distribution distance and a per-image perceptual distance react to structural perturbations of real images.

The paper measures FID and LPIPS between real images and (1) fish-eye distorted copies, coefficient 0.0–0.5
(Figs. 2, 3), and (2) randomly translated copies, shifts in (−t, −t)…(t, t), with raw vs reflection padding
(Figs. 4, 5), and argues that FID stays flat for small distortions while LPIPS grows linearly. Neither network can
be fetched here (dfi_core.metrics.UNAVAILABLE), so this study uses stand-ins, named as such in every output:

- **FD** (for FID): the Fréchet distance (training.evaluation.fd) of the data set's classifier penultimate features
  (training.evaluation.samples.classifier_features) — the project's domain FD — between the n real images and
  their n distorted copies (paired sets, so no image-sampling noise enters; `fd_floor` gives the scale: two
  disjoint sets of real images).
- **LPIPS-style distance** (for LPIPS): per image, the classifier's intermediate feature maps (the output of every
  conv stage's activation, `feature_maps`) unit-normalised along channels, squared differences summed over
  channels, averaged over space and summed over layers — LPIPS's formula (Zhang et al. 2018) with all its learned
  linear weights set to 1 (the `lpips=False` baseline of the LPIPS code), in this small classifier instead of
  AlexNet/VGG. Pixel-level references: 1 − SSIM and MSE (dfi_core.metrics, [0, 1] images).

Distortions (images [N, C, H, W] in [−1, +1]; `background` is the value uncovered pixels get, −1 = black, the
Fashion-MNIST background):

- `fisheye`: a radial backward map sampled with grid_sample (bilinear). Output pixel at normalised position p
  (pixel centres, centre 0, edge midpoints ±1, r = |p|) takes the input at

      q = s·p / (1 − k·s²·r²),    s = (√(1 + 4k) − 1) / (2k)   (s = 1 at k = 0)

  — the formula of the iFish script (github.com/Gil-Mor/iFish, fish.py: `get_fish_xn_yn` and its edge-keeping
  scale `get_scale`), the commonly used "distortion coefficient" fish-eye whose 0–0.5 range matches Fig. 2; the
  paper states neither its formula nor its code. s makes the edge midpoints map onto themselves, so the centre is
  magnified by 1/s (1.37× at k = 0.5), content moves outwards and the corners (r > 1) are compressed, with
  background where q leaves the image. Unlike iFish the grid is centred on the pixel centres and sampled
  bilinearly (iFish truncates to the nearest pixel on a grid offset by half a pixel).
- `translate`: integer shifts (dy, dx) per image (`random_shifts`: uniform in [−t, t] on both axes, seeded, the
  same shifts for both paddings). "raw": the shifted image with `background` filling the uncovered band — the
  Fashion-MNIST analogue of the paper's crop from a larger real image (items sit on black); "reflection": the
  band filled by reflect padding (the paper's "creepy" reflection images, Fig. 4).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dfi_core import metrics
from training.evaluation.fd import frechet_distance_of_features

FISHEYE_COEFFICIENTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)  # Fig. 2 / 3
TRANSLATIONS = (0, 1, 2, 3, 4, 5, 6)  # t in pixels for 28 × 28 (Fig. 5 uses up to 21 px on larger faces)
PADDINGS = ("raw", "reflection")
FD_KEYS = ("fd", "fd_pooled")
ROW_KEYS = (*FD_KEYS, "lpips_style", "lpips_style_std", "one_minus_ssim", "mse", "accuracy")
METRIC_LABELS = {
    "fd": "FD (classifier features; stands in for FID)",
    "fd_pooled": "FD pooled (space-averaged last conv map)",
    "lpips_style": "LPIPS-style distance (classifier feature maps, unit weights; stands in for LPIPS)",
    "one_minus_ssim": "1 − SSIM",
    "mse": "MSE ([0, 1] images)",
}


# --- distortions -------------------------------------------------------------------------------------------------


def fisheye_scale(k: float) -> float:
    """iFish's edge-keeping scale s: the output edge midpoint (r = 1) samples the input edge midpoint."""
    return 1.0 if k == 0 else (math.sqrt(1.0 + 4.0 * k) - 1.0) / (2.0 * k)


def fisheye(images: torch.Tensor, k: float, background: float = -1.0) -> torch.Tensor:
    """Fish-eye distortion with coefficient k ≥ 0 (module docstring: q = s·p / (1 − k·s²·r²)); k = 0 is the
    identity up to bilinear round-off (~1e-6)."""
    if k < 0:
        raise ValueError(f"fish-eye coefficient must be ≥ 0, got {k}")
    n, _, h, w = images.shape
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    s = fisheye_scale(k)
    denom = 1.0 - k * s * s * (px * px + py * py)
    valid = denom > 0  # beyond the singularity: no source pixel (iFish pushes these out of the image too)
    denom = torch.where(valid, denom, torch.ones_like(denom))
    qx = torch.where(valid, s * px / denom, torch.full_like(px, 4.0))
    qy = torch.where(valid, s * py / denom, torch.full_like(py, 4.0))
    grid = torch.stack([qx, qy], -1).to(images.dtype, copy=True).to(images.device).expand(n, h, w, 2)
    # grid_sample fills outside with 0: sample (x − background) so the uncovered pixels come back as background.
    out = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + background


def random_shifts(n: int, t: int, seed: int = 0) -> torch.Tensor:
    """[n, 2] int64 (dy, dx), each uniform in [−t, t] (the paper's random shift in (−t, −t)…(t, t))."""
    if t < 0:
        raise ValueError(f"translation coefficient must be ≥ 0, got {t}")
    return torch.randint(-t, t + 1, (n, 2), generator=torch.Generator().manual_seed(seed))


def translate(images: torch.Tensor, shifts: torch.Tensor, padding: str = "raw",
              background: float = -1.0) -> torch.Tensor:  # fmt: skip
    """Shift image i by shifts[i] = (dy, dx) pixels (out[y, x] = in[y − dy, x − dx]); the uncovered band is
    `background` ("raw") or the reflection of the image ("reflection")."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    n, _, h, w = images.shape
    if shifts.shape != (n, 2):
        raise ValueError(f"need [{n}, 2] shifts, got {tuple(shifts.shape)}")
    t = int(shifts.abs().max()) if n else 0
    if t == 0:
        return images.clone()
    if padding == "reflection" and t >= min(h, w):
        raise ValueError(f"reflection padding needs shifts < {min(h, w)} px, got {t}")
    pad = (t, t, t, t)
    padded = F.pad(images, pad, mode="reflect") if padding == "reflection" else F.pad(images, pad, value=background)
    shifts = shifts.to(images.device)
    rows = (t - shifts[:, 0]).view(n, 1, 1) + torch.arange(h, device=images.device).view(1, h, 1)
    cols = (t - shifts[:, 1]).view(n, 1, 1) + torch.arange(w, device=images.device).view(1, 1, w)
    picked = padded[torch.arange(n, device=images.device).view(n, 1, 1), :, rows, cols]  # [N, H, W, C]
    return picked.permute(0, 3, 1, 2).contiguous()


# --- the stand-in metrics ----------------------------------------------------------------------------------------


def feature_maps(classifier: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The classifier trunk's spatial activations: the output of every LeakyReLU on a 4-D map (for the
    Fashion-MNIST classifier 32 × 14 × 14 and 64 × 7 × 7) — LPIPS's "every conv stage after its ReLU"."""
    maps, x = [], images
    for layer in classifier.trunk.net:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU) and x.ndim == 4:
            maps.append(x)
    if not maps:
        raise ValueError("the classifier trunk has no convolutional activation maps")
    return maps


def pooled_features(maps: list[torch.Tensor]) -> torch.Tensor:
    """[N, C] the last activation map averaged over space: a translation-tolerant feature vector, as Inception's
    pool3 (global average pooling) is, unlike the classifier's penultimate layer (a Linear over the 7 × 7 map)."""
    return maps[-1].mean((2, 3))


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + eps)  # LPIPS's normalize_tensor


def lpips_style_distance(maps_a: list[torch.Tensor], maps_b: list[torch.Tensor]) -> torch.Tensor:
    """[N] Σ_layers mean_space Σ_channels (unit(a) − unit(b))²: LPIPS with unit weights (each term ∈ [0, 4])."""
    return sum(((_unit(a) - _unit(b)) ** 2).sum(1).mean((1, 2)) for a, b in zip(maps_a, maps_b, strict=True))


@torch.no_grad()
def image_features(classifier: nn.Module, images: torch.Tensor, batch: int = 500) -> dict[str, np.ndarray]:
    """The two FD feature spaces: "fd" the penultimate features (classifier_features), "fd_pooled" `pooled_features`."""
    out: dict[str, list[torch.Tensor]] = {key: [] for key in FD_KEYS}
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        out["fd"].append(classifier.trunk(x).cpu())
        out["fd_pooled"].append(pooled_features(feature_maps(classifier, x)).cpu())
    return {key: torch.cat(v).numpy() for key, v in out.items()}


@torch.no_grad()
def score_pair(classifier: nn.Module, originals: torch.Tensor, distorted: torch.Tensor, labels: torch.Tensor,
               real: dict[str, np.ndarray], batch: int = 500) -> dict[str, float]:  # fmt: skip
    """One distortion level: the FDs of the distorted copies' features to `real` (the originals', `image_features`),
    the mean (and std) LPIPS-style distance, mean 1 − SSIM and MSE of the pairs, the classifier's accuracy on the
    copies."""
    lp, correct = [], 0
    feats: dict[str, list[torch.Tensor]] = {key: [] for key in FD_KEYS}
    for i in range(0, len(originals), batch):
        a, b = originals[i : i + batch], distorted[i : i + batch]
        maps_b = feature_maps(classifier, b)
        lp.append(lpips_style_distance(feature_maps(classifier, a), maps_b).double().cpu())
        f = classifier.trunk(b)
        feats["fd"].append(f.cpu())
        feats["fd_pooled"].append(pooled_features(maps_b).cpu())
        correct += int((classifier.head(f).argmax(1) == labels[i : i + batch]).sum())
    lpips_values = torch.cat(lp).numpy()
    a_np, b_np = originals.cpu().numpy(), distorted.cpu().numpy()
    return {
        **{key: frechet_distance_of_features(real[key], torch.cat(v).numpy()) for key, v in feats.items()},
        "lpips_style": float(lpips_values.mean()),
        "lpips_style_std": float(lpips_values.std(ddof=1)) if len(lpips_values) > 1 else 0.0,
        "one_minus_ssim": float(np.mean(1.0 - metrics.ssim(b_np, a_np))),
        "mse": float(np.mean(metrics.mse(b_np, a_np))),
        "accuracy": correct / len(originals),
    }


# --- the study ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def robustness_study(classifier_path: str | Path, n: int = 2000, coefficients: tuple[float, ...] = FISHEYE_COEFFICIENTS,
                     translations: tuple[int, ...] = TRANSLATIONS, seed: int = 0, device: str = "cpu",
                     background: float = -1.0) -> dict[str, Any]:  # fmt: skip
    """Both studies on the first n test images of the classifier's data set. Fixed keys: see the return value;
    each row has `ROW_KEYS`."""
    from training.classifiers.classifier import load_classifier
    from training.core.torch_utils import resolve_device
    from training.datasets import load_dataset

    dev = resolve_device(device)
    classifier, config = load_classifier(classifier_path, dev)
    data = load_dataset(config.data.name, "test", config.data.data_dir)
    if not 4 <= n <= len(data):
        raise ValueError(f"need 4 ≤ n ≤ {len(data)} test images, got {n}")
    index = torch.arange(n)
    x, labels = data.batch(index, dev), data.label_batch(index, dev)
    real = image_features(classifier, x)
    half = n // 2
    floor = {"halves": {"n": half, **{k: frechet_distance_of_features(v[:half], v[half : 2 * half])
                                      for k, v in real.items()}}}  # fmt: skip
    if 2 * n <= len(data):
        other = image_features(classifier, data.batch(torch.arange(n, 2 * n), dev))
        floor["disjoint"] = {"n": n, **{k: frechet_distance_of_features(real[k], other[k]) for k in FD_KEYS}}
    fish_rows = [{"coefficient": k, **score_pair(classifier, x, fisheye(x, k, background), labels, real)}
                 for k in coefficients]  # fmt: skip
    trans_rows: dict[str, list[dict[str, Any]]] = {p: [] for p in PADDINGS}
    for t in translations:
        shifts = random_shifts(n, t, seed)
        for padding in PADDINGS:
            moved = translate(x, shifts, padding, background)
            trans_rows[padding].append({"t": t, **score_pair(classifier, x, moved, labels, real)})
    maps = feature_maps(classifier, x[:1])
    return {
        "study": "IJCV 2020 sec. 3.2 Figs. 2-5 analogue: metrics between real images and distorted copies",
        "data": config.data.name,
        "split": "test",
        "images": "first n of the split",
        "n": n,
        "seed": seed,
        "background": background,
        "classifier": str(classifier_path),
        "stand_ins": {
            "fd": f"Frechet distance of the {config.model.feature_dim}-d penultimate features of the classifier, "
            "n originals vs their n distorted copies (stands in for FID; Inception weights unavailable)",
            "fd_pooled": f"the same Frechet distance in the last conv activation map averaged over space "
            f"({maps[-1].shape[1]}-d; translation-tolerant like Inception's pool3, a variant of fd)",
            "lpips_style": "per image: classifier activation maps after each conv stage "
            f"({', '.join('x'.join(str(d) for d in m.shape[1:]) for m in maps)}), unit-normalised along channels, "
            "squared difference summed over channels, averaged over space, summed over layers: LPIPS with unit "
            "linear weights (stands in for LPIPS; AlexNet/VGG and the learned weights unavailable)",
            "one_minus_ssim": "1 - torchmetrics SSIM per image on [0, 1] images (dfi_core.metrics.ssim)",
            "mse": "per-image MSE on [0, 1] images (dfi_core.metrics.mse)",
            "accuracy": "the classifier's accuracy on the distorted copies (its accuracy on the originals at "
            "coefficient 0 / t = 0)",
        },
        "distortions": {
            "fisheye": "q = s p / (1 - k s^2 |p|^2), s = (sqrt(1 + 4k) - 1) / (2k): iFish's fish.py formula with "
            "its edge-keeping scale, pixel-centred grid, bilinear grid_sample, background outside",
            "translation": "integer (dy, dx) uniform in [-t, t] per image, torch.Generator seed `seed`, the same "
            "shifts for both paddings; raw = background fills the uncovered band, reflection = reflect padding",
        },
        "fd_floor": floor,
        "fisheye": {"coefficients": list(coefficients), "rows": fish_rows},
        "translation": {"t": list(translations), "paddings": list(PADDINGS), **trans_rows},
    }


# --- the report --------------------------------------------------------------------------------------------------


def _cells(row: dict[str, Any]) -> str:
    return (f"{row['fd']:.3f} | {row['fd_pooled']:.4f} | {row['lpips_style']:.4f} ± {row['lpips_style_std']:.4f} | "
            f"{row['one_minus_ssim']:.4f} | {row['mse']:.4f} | {row['accuracy']:.3f}")  # fmt: skip


def reference_floor(result: dict[str, Any]) -> dict[str, Any]:
    """The real-vs-real FD at the study's n when the split holds 2n images, else the halves' floor (n/2)."""
    return result["fd_floor"].get("disjoint", result["fd_floor"]["halves"])


def markdown_tables(result: dict[str, Any]) -> str:
    head = "FD | FD pooled | LPIPS-style (mean ± std) | 1 − SSIM | MSE | accuracy |"
    lines = [f"Fish-eye, n = {result['n']} {result['data']} test images:", "",
             f"| coefficient | {head}", "|---" * 7 + "|"]  # fmt: skip
    lines += [f"| {row['coefficient']:.1f} | {_cells(row)} |" for row in result["fisheye"]["rows"]]
    lines += ["", "Random translation in [−t, t]² px (same shifts for both paddings):", "",
              f"| t | padding | {head}", "|---" * 8 + "|"]  # fmt: skip
    tr = result["translation"]
    for i, t in enumerate(tr["t"]):
        lines += [f"| {t} | {p} | {_cells(tr[p][i])} |" for p in tr["paddings"]]
    lines += ["", "FD between real images (the floor, for scale):", "",
              "| real sets | FD | FD pooled |", "|---|---|---|"]  # fmt: skip
    floor = result["fd_floor"]
    lines.append(f"| two disjoint halves of the n ({floor['halves']['n']} vs {floor['halves']['n']}) | "
                 f"{floor['halves']['fd']:.3f} | {floor['halves']['fd_pooled']:.4f} |")  # fmt: skip
    if "disjoint" in floor:
        d = floor["disjoint"]
        lines.append(f"| test[0:n] vs test[n:2n] ({d['n']} vs {d['n']}) | {d['fd']:.3f} | {d['fd_pooled']:.4f} |")
    lines += ["", "Stand-ins (no LPIPS/FID weights here): "
              + "; ".join(f"**{k}**: {v}" for k, v in result["stand_ins"].items()) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _normalised(values: list[float], reference: float) -> list[float]:
    return [v / reference if reference > 0 else float("nan") for v in values]


COLOURS = {"fd": "#c0392b", "fd_pooled": "#e67e22", "lpips_style": "#2c6fbb", "one_minus_ssim": "#27ae60",
           "mse": "#8e8e8e"}  # fmt: skip


def _finish(plt: Any, fig: Any, ax_fd: Any, xlabel: str, floor_label: str, path: Path) -> None:
    """The FD-over-floor panel's reference line and labels (the same on both figures), then save."""
    ax_fd.axhline(1.0, color="k", ls="--", lw=0.8, label="= real vs real")
    ax_fd.set_xlabel(xlabel)
    ax_fd.set_ylabel(floor_label, fontsize=8)
    ax_fd.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(result: dict[str, Any], fish_path: Path, trans_path: Path) -> None:
    """Left: each metric divided by its value at the largest distortion, so the curves' shapes compare (translation:
    by the larger of the two paddings' values at the largest t, one scale per metric); right: the two FDs in units
    of their real-vs-real floor (`reference_floor`; below 1 = smaller than the FD between two real image sets)."""
    from training.core.plotting import pyplot

    plt = pyplot()
    floor = reference_floor(result)
    floor_label = f"FD / FD(real, real), {floor['n']} vs {floor['n']}"

    fish = result["fisheye"]
    ks = fish["coefficients"]
    fig, (ax, ax_fd) = plt.subplots(1, 2, figsize=(10.5, 3.9))
    for key, colour in COLOURS.items():
        values = [row[key] for row in fish["rows"]]
        ax.plot(ks, _normalised(values, values[-1]), "o-", color=colour, label=METRIC_LABELS[key], lw=1.5, ms=4)
    ax.set_xlabel("fish-eye coefficient k")
    ax.set_ylabel(f"metric / metric at k = {ks[-1]:g}")
    ax.set_title(f"Fig. 3 analogue: {result['data']}, n = {result['n']}", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left")
    for key in FD_KEYS:
        ax_fd.plot(ks, [row[key] / floor[key] for row in fish["rows"]], "o-", color=COLOURS[key],
                   label=METRIC_LABELS[key].split(" (")[0])  # fmt: skip
    _finish(plt, fig, ax_fd, "fish-eye coefficient k", floor_label, fish_path)

    tr = result["translation"]
    ts = tr["t"]
    styles = dict(zip(tr["paddings"], ("o-", "s--"), strict=True))
    fig, (ax, ax_fd) = plt.subplots(1, 2, figsize=(10.5, 3.9))
    for key, colour in COLOURS.items():
        reference = max(tr[p][-1][key] for p in tr["paddings"])
        for padding, style in styles.items():
            values = [row[key] for row in tr[padding]]
            ax.plot(ts, _normalised(values, reference), style, color=colour, lw=1.5, ms=4,
                    label=f"{METRIC_LABELS[key].split(' (')[0]}, {padding}")  # fmt: skip
    ax.set_xlabel("translation coefficient t (px)")
    ax.set_ylabel(f"metric / max over paddings at t = {ts[-1]}")
    ax.set_title(f"Fig. 5 analogue: {result['data']}, n = {result['n']} (solid raw, dashed reflection)", fontsize=9)
    ax.legend(fontsize=5.5, loc="upper left", ncol=2)
    for key in FD_KEYS:
        for padding, style in styles.items():
            ax_fd.plot(ts, [row[key] / floor[key] for row in tr[padding]], style, color=COLOURS[key],
                       label=f"{METRIC_LABELS[key].split(' (')[0]}, {padding}")  # fmt: skip
    _finish(plt, fig, ax_fd, "translation coefficient t (px)", floor_label, trans_path)


def example_grids(classifier_path: str | Path, result: dict[str, Any], fish_path: Path, trans_path: Path,
                  rows: int = 6) -> None:  # fmt: skip
    """Fig. 2 analogue (each row one test image at k = 0, 0.1, …) and Fig. 4 analogue (each row: original,
    shift (t, t) with raw padding, the same with reflection padding, t the largest)."""
    from training.classifiers.classifier import load_classifier
    from training.core.plotting import save_grid
    from training.datasets import load_dataset

    config = load_classifier(classifier_path)[1]
    x = load_dataset(config.data.name, "test", config.data.data_dir).batch(torch.arange(rows))
    ks = result["fisheye"]["coefficients"]
    fish = torch.stack([fisheye(x, k, result["background"]) for k in ks], 1).flatten(0, 1)
    save_grid(fish, fish_path, nrow=len(ks), scale=3)
    t = result["translation"]["t"][-1]
    shift = torch.full((rows, 2), t, dtype=torch.int64)
    trans = torch.stack([x, translate(x, shift, "raw", result["background"]),
                         translate(x, shift, "reflection", result["background"])], 1).flatten(0, 1)  # fmt: skip
    save_grid(trans, trans_path, nrow=3, scale=3)


def write_robustness_report(result: dict[str, Any], out: Path, name: str = "robustness") -> list[Path]:
    """<name>.json, <name>.md (the tables), <name>-fisheye.png / <name>-translation.png (curves) and
    <name>-fisheye-examples.png / <name>-translation-examples.png (Figs. 2 and 4 analogues)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}-fisheye.png", out / f"{name}-translation.png",
             out / f"{name}-fisheye-examples.png", out / f"{name}-translation-examples.png"]  # fmt: skip
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(markdown_tables(result))
    plot_curves(result, paths[2], paths[3])
    example_grids(result["classifier"], result, paths[4], paths[5])
    return paths
