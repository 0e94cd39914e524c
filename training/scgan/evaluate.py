"""Measured evaluation of an SCGAN on unseen test images (numbers for docs/results/scgan.md, figures beside it).

    python -m training evaluate scgan --scgan runs/scgan/fashion-mnist/scgan.safetensors \
        --classifier runs/zoo/fashion-mnist-classifier/classifier.safetensors --out docs/results/scgan

On the first `n` test images (never seen in training):
  * reconstruction of the patch: PSNR / SSIM of x_center vs y_crop (SCGAN) next to x_center vs G_center(ẑ_center)
    (the patch GAN's own DFI reconstruction);
  * domain FD (the zoo classifier's 128-d penultimate features; it takes full 28×28 images) against a reference set
    of real test images disjoint from the evaluated ones (test images n … end): real evaluated images (the floor at
    this sample size), y_full (one z_edge per patch), x_full with its patch replaced by y_crop, and x_full with its
    patch replaced by G_center(ẑ_center);
  * diversity on the first 100 patches × 8 z_edge: mean pairwise L2 over the pixels outside the patch and inside it;
  * quality: FD of y_full with 8 z_edge per patch (8·n images) and of unconditional G_full(z ~ N(0, I)).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dfi_core.preprocessing import to_uint8
from training.classifiers.classifier import load_classifier
from training.core.plotting import save_grid
from training.datasets import load_dataset
from training.evaluation.fd import frechet_distance_of_features
from training.evaluation.scoring import Scores
from training.scgan.model import SCGANConfig, crop, glue, load_scgan


def _features(classifier: torch.nn.Module, x: torch.Tensor, batch: int = 500) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([classifier.features(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def pairwise_l2(samples: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over pairs (i < j) of ‖(s_i − s_j)·mask‖₂ for samples [K, C, H, W] (values in [-1, 1])."""
    flat = (samples * mask).flatten(1)
    dist = torch.cdist(flat.double(), flat.double())
    k = len(samples)
    return float(dist.sum() / (k * (k - 1)))


def _boxed(patch: torch.Tensor, cfg: SCGANConfig, scale: int) -> np.ndarray:
    """The input patch drawn at its place in an empty (−1) full-size canvas, red box around it; [H·s, W·s, 3]."""
    canvas = torch.full((1, *cfg.shape), -1.0)
    canvas = glue(canvas, patch[None], cfg)
    tile = np.repeat(to_uint8(canvas.numpy())[0], 3, axis=2) if cfg.shape[0] == 1 else to_uint8(canvas.numpy())[0]
    picture = Image.fromarray(tile).resize((tile.shape[1] * scale, tile.shape[0] * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(picture)
    t, left, s = cfg.patch_top * scale, cfg.patch_left * scale, cfg.patch_size * scale
    draw.rectangle([left - 1, t - 1, left + s, t + s], outline=(230, 30, 30), width=1)
    return np.asarray(picture)


def _tile(image: torch.Tensor, scale: int) -> np.ndarray:
    tile = to_uint8(image[None].numpy())[0]
    tile = np.repeat(tile, 3, axis=2) if tile.shape[2] == 1 else tile
    return np.asarray(
        Image.fromarray(tile).resize((tile.shape[1] * scale, tile.shape[0] * scale), Image.Resampling.NEAREST)
    )


def figure_outpaint(rows: list[list[np.ndarray]], path: Path, pad: int = 4) -> Path:
    h, w, _ = rows[0][0].shape
    n_cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad + pad, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            x0 = pad + c * (w + pad) + (pad if c >= 2 else 0)  # a wider gap after input | original
            grid[pad + r * (h + pad) : pad + r * (h + pad) + h, x0 : x0 + w] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def evaluate_scgan(scgan: Path, classifier_path: Path, out: Path, n: int = 1000, per_patch: int = 8,
                   diversity_patches: int = 100, seed: int = 0) -> dict:  # fmt: skip
    modules, cfg = load_scgan(scgan)
    G_center, inverter, G_full = modules["G_center"], modules["inverter"], modules["G_full"]
    classifier, cls_cfg = load_classifier(classifier_path)
    if tuple(cls_cfg.model.shape) != tuple(cfg.shape):
        raise ValueError(f"classifier input {cls_cfg.model.shape} ≠ image {cfg.shape}")
    test = load_dataset(cfg.data, "test", cfg.data_dir)
    x_full = test.batch(torch.arange(n))
    reference = test.batch(torch.arange(n, len(test)))
    x_center = crop(x_full, cfg).contiguous()
    rng = torch.Generator().manual_seed(seed)
    result: dict = {"n": n, "reference_images": len(reference), "config": {"patch": [cfg.patch_top, cfg.patch_left,
                    cfg.patch_size], "z_center": cfg.z_center, "z_edge": cfg.z_edge}}  # fmt: skip
    with torch.no_grad():
        z_hat = inverter(x_center)
        center_dfi = G_center(z_hat)
        z_edge = torch.randn(n, cfg.z_edge, generator=rng)
        y_full = G_full(torch.cat([z_hat, z_edge], 1))
        y_crop = crop(y_full, cfg).contiguous()
        latent_l1 = float((inverter(y_crop) - z_hat).abs().mean())

    def summary(recon: torch.Tensor) -> dict:
        scores = Scores(("psnr", "ssim", "mse"))
        scores.add_images(recon, x_center)
        summaries = scores.summary()  # metrics.json keeps its schema: the three means, then PSNR's std
        return {k: s["mean"] for k, s in summaries.items()} | {"psnr_std": summaries["psnr"]["std"]}

    ref_feat = _features(classifier, reference)
    fd = lambda x: frechet_distance_of_features(_features(classifier, x), ref_feat)  # noqa: E731
    result["reconstruction"] = {
        "scgan_y_crop": summary(y_crop),
        "patch_dfi_G_center": summary(center_dfi),
        "latent_consistency_l1_test": latent_l1,
    }
    result["fd"] = {
        "real_eval_images": fd(x_full),
        "y_full_1_per_patch": fd(y_full),
        "x_full_with_patch_from_y_crop": fd(glue(x_full, y_crop, cfg)),
        "x_full_with_patch_from_G_center": fd(glue(x_full, center_dfi, cfg)),
    }
    # quality: 8 z_edge per patch
    many = []
    with torch.no_grad():
        for _ in range(per_patch):
            z_e = torch.randn(n, cfg.z_edge, generator=rng)
            many.append(G_full(torch.cat([z_hat, z_e], 1)))
        z_uncond = torch.randn(n * per_patch, cfg.z_center + cfg.z_edge, generator=rng)
        uncond = torch.cat([G_full(z_uncond[i : i + 1000]) for i in range(0, len(z_uncond), 1000)])
    result["fd"]["y_full_8_per_patch"] = fd(torch.cat(many))
    result["fd"]["G_full_unconditional"] = fd(uncond)
    # diversity
    outside = torch.ones(1, *cfg.shape)
    t, left, s = cfg.patch_top, cfg.patch_left, cfg.patch_size
    outside[:, :, t : t + s, left : left + s] = 0
    inside = 1 - outside
    samples = torch.stack(many, 1)  # [n, 8, C, H, W]
    outs = [pairwise_l2(samples[i], outside) for i in range(diversity_patches)]
    ins = [pairwise_l2(samples[i], inside) for i in range(diversity_patches)]
    # scale: the same distances between 8 different real images (reference set, random disjoint groups; emoji's
    # small test split gives fewer groups than patches)
    real_groups = min(diversity_patches, len(reference) // per_patch)
    perm = torch.randperm(len(reference), generator=rng)[: real_groups * per_patch]
    groups = perm.view(real_groups, per_patch)
    real_outs = [pairwise_l2(reference[idx], outside) for idx in groups]
    real_ins = [pairwise_l2(reference[idx], inside) for idx in groups]
    n_out, n_in = int(outside.sum()), int(inside.sum())
    result["diversity"] = {
        "patches": diversity_patches,
        "samples_per_patch": per_patch,
        "real_groups": real_groups,
        "outside_pixels": n_out,
        "inside_pixels": n_in,
        "outside_mean_pairwise_l2": float(np.mean(outs)),
        "inside_mean_pairwise_l2": float(np.mean(ins)),
        "outside_rms_per_pixel": float(np.mean(outs)) / n_out**0.5,
        "inside_rms_per_pixel": float(np.mean(ins)) / n_in**0.5,
        "real_random_images_outside_mean_pairwise_l2": float(np.mean(real_outs)),
        "real_random_images_inside_mean_pairwise_l2": float(np.mean(real_ins)),
    }
    # figures
    out.mkdir(parents=True, exist_ok=True)
    scale = 4
    picks = torch.linspace(0, n - 1, 8).long() if n >= 8 else torch.arange(n)
    rows = []
    for i in picks.tolist():
        rows.append([_boxed(x_center[i], cfg, scale), _tile(x_full[i], scale)]
                    + [_tile(samples[i, k], scale) for k in range(6)])  # fmt: skip
    figure_outpaint(rows, out / "outpaint-fig12.png")
    with torch.no_grad():
        grid_z = torch.randn(64, cfg.z_center + cfg.z_edge, generator=torch.Generator().manual_seed(seed + 7))
        save_grid(G_full(grid_z), out / "g_full-samples.png", nrow=8, scale=3)
        save_grid(G_center(grid_z[:, : cfg.z_center]), out / "g_center-samples.png", nrow=8, scale=4)
    pairs = torch.stack([x_center[:16], center_dfi[:16], y_crop[:16]], 1).flatten(0, 1)
    save_grid(pairs, out / "patch-reconstruction.png", nrow=12, scale=4)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result
