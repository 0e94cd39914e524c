"""IJCV sec. 4.6 analogue (docs/results/dfi-classifier.md): the latent error of each inverter on fresh generated pairs,
and one picture of unseen test images with every inverter's reconstruction (training.core.plotting.save_grid).

    python docs/results/dfi-classifier/compare.py NAME=INVERTER ... [--out docs/results/dfi-classifier]
        [--name latent_error] [--no-picture]

latent error: mean ‖z − ẑ‖² / |z| (training.evaluation.reconstruction.latent_error) on 5 disjoint blocks of 1000
pairs z ~ N(0, I), G(z) (block seeds 100–104, none of them a training or held-out seed), mean ± std over blocks.
Picture: the first two test images of each class (rows: input, then one row per inverter, in the order given).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from training.core.plotting import save_grid
from training.evaluation.reconstruction import latent_error
from training.inversion.dfi import load_gan_split, load_inverter, read_gan_config

BLOCKS, PAIRS, FIRST_SEED, PER_CLASS = 5, 1000, 100, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inverters", nargs="+", help="NAME=PATH of an inverter.safetensors")
    parser.add_argument("--out", type=Path, default=Path("docs/results/dfi-classifier"))
    parser.add_argument("--name", default="latent_error", help="file stem of the JSON result")
    parser.add_argument("--no-picture", action="store_true", help="latent errors only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, result = {}, {"pairs_per_block": PAIRS, "blocks": BLOCKS, "block_seeds": [], "latent_error": {}}
    result["block_seeds"] = list(range(FIRST_SEED, FIRST_SEED + BLOCKS))
    for item in args.inverters:
        name, _, path = item.partition("=")
        inverter, G, _, config = load_inverter(path)
        z_dim = read_gan_config(config.gan_checkpoint).generator.z_dim
        with torch.no_grad():
            errors = [latent_error(inverter, G, PAIRS, z_dim, "cpu", seed=s) for s in result["block_seeds"]]
        values = torch.tensor(errors)
        result["latent_error"][name] = {"mean": values.mean().item(), "std": values.std().item(), "blocks": errors,
                                        "inverter": path}  # fmt: skip
        rows[name] = (inverter, G, config)
        print(f"{name}: latent error {values.mean():.4f} ± {values.std():.4f}")
    if not args.no_picture:
        result["picture"] = save_picture(rows, args.out)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out / f'{args.name}.json'}")


def save_picture(rows: dict, out: Path) -> dict:
    first = next(iter(rows.values()))[2]
    test = load_gan_split(read_gan_config(first.gan_checkpoint), "test")
    labels = test.label_batch(torch.arange(len(test)))
    index = torch.cat([torch.nonzero(labels == c).flatten()[:PER_CLASS] for c in range(int(labels.max()) + 1)])
    x = test.batch(index)
    pictures = [x]
    with torch.no_grad():
        for inverter, G, _ in rows.values():
            pictures.append(G(inverter(x)))
    grid = save_grid(torch.cat(pictures), out / "reconstructions.png", nrow=len(index), scale=3)
    print(f"written: {grid}")
    return {"file": str(grid), "test_indices": index.tolist(), "rows": ["input", *rows]}


if __name__ == "__main__":
    main()
