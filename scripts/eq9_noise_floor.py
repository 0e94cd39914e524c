"""How much of each emoji eq. 9 vector is sampling noise (docs/results/editing.md).

(1) A fake attribute: in every group, as many random images of the recipe's 'without' side as it has 'with'
images (at most half the side) play 'with'; eq. 9 of that is pure sampling noise. (2) Split-half agreement: the
recipe computed on the twitter pack alone vs the google pack alone (cosine).

    python scripts/eq9_noise_floor.py [--bundle models/emoji] [--draws 20]
"""

from __future__ import annotations

import argparse

import numpy as np

from dfi_core.bundle import load_bundle
from dfi_core.datasets import emoji_split_of
from training.editing.directions import attribute_rows, bundle_latents, direction_specs, load_direction_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="models/emoji")
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    data = load_direction_data("emoji")
    stored = np.load(data.source)
    packs = stored["pack"][np.array([emoji_split_of(g) == "train" for g in stored["group"].tolist()])]
    latents = bundle_latents(load_bundle(args.bundle), data.images, threads=1)
    rows = attribute_rows(data)
    rng = np.random.default_rng(0)

    def eq9(index_with: np.ndarray, index_without: np.ndarray, group_of: np.ndarray) -> np.ndarray:
        diffs = []
        for g in set(group_of[index_with]) & set(group_of[index_without]):
            a, b = index_with[group_of[index_with] == g], index_without[group_of[index_without] == g]
            diffs.append(latents[a].mean(0) - latents[b].mean(0))
        return np.mean(diffs, axis=0)

    print(f"| direction | with | ‖eq. 9‖ | ‖fake attribute‖ ({args.draws} draws) | cos(twitter half, google half) |")
    print("|---|---|---|---|---|")
    for spec in direction_specs("emoji"):
        group_of = np.array([str(spec.group(r)) for r in rows])
        w = np.array([i for i, r in enumerate(rows) if spec.with_(r)])
        wo = np.array([i for i, r in enumerate(rows) if spec.without(r) and not spec.with_(r)])
        w = w[np.isin(group_of[w], group_of[wo])]
        norm = np.linalg.norm(eq9(w, wo, group_of))
        fakes = []
        for _ in range(args.draws):
            fake: list[int] = []
            for g in set(group_of[w]):
                pool = wo[group_of[wo] == g]
                fake += rng.choice(pool, min((group_of[w] == g).sum(), len(pool) // 2), replace=False).tolist()
            chosen = np.array(fake)
            fakes.append(np.linalg.norm(eq9(chosen, np.setdiff1d(wo, chosen), group_of)))
        halves = [eq9(w[packs[w] == p], wo[packs[wo] == p], group_of) for p in ("twitter", "google")]
        cos = halves[0] @ halves[1] / np.linalg.norm(halves[0]) / np.linalg.norm(halves[1])
        print(f"| `{spec.name}` | {len(w)} | {norm:.2f} | {np.mean(fakes):.2f} ± {np.std(fakes):.2f} | {cos:+.2f} |")


if __name__ == "__main__":
    main()
