"""A Ray Data recipe: invert a folder of images on a Ray cluster with a bundle's DFI — one ONNX Runtime session per
actor, the same decode and inversion code as the service's chunks (service.sources, service.chunks).

    pip install "ray[data]"
    python scripts/examples/ray_invert.py --model models/fashion-mnist --input photos/ --out latents.npz

The output has the keys of an invert job's result (z, names, errors) with names sorted. Ray splits the input into
its own blocks, so batches differ from a job's chunks: latents agree with the job's to ONNX Runtime's float32
rounding (~1e-6), not byte for byte — use `python -m service.batch` when bytes must match.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


class Inverter:
    """A Ray actor: loads the bundle once (its ONNX sessions), then inverts every batch it is given."""

    def __init__(self, model_dir: str, batch_size: int = 250) -> None:
        from service.metrics import ApiMetrics
        from service.registry import load_model
        from service.settings import Settings

        self.settings = Settings(intra_op_threads=1)  # one thread per actor: Ray runs one actor per CPU
        self.model = load_model(Path(model_dir), self.settings, ApiMetrics())
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from service.chunks import JobSpec, compute_chunk
        from service.sources import DecodeLimits, decode_items

        limits = DecodeLimits(self.settings.max_image_bytes, self.settings.max_image_pixels)
        items = [(str(path), bytes(data)) for path, data in zip(batch["path"], batch["bytes"], strict=True)]
        decoded = decode_items(items, self.model.bundle.manifest.image, limits)
        arrays = compute_chunk(self.model, decoded, JobSpec("invert", batch_size=self.batch_size))
        z_dim = arrays["z"].shape[1]
        # One row per input: a skipped file keeps its reason and a NaN latent, so Ray's blocks stay rectangular.
        good = {name: row for name, row in zip(decoded.names, arrays["z"], strict=True)}
        reasons = dict(decoded.errors)
        names = [name for name, _ in items]
        return {
            "name": np.array(names, dtype=str),
            "z": np.stack([good.get(name, np.full(z_dim, np.nan, np.float32)) for name in names]),
            "error": np.array([reasons.get(name, "") for name in names], dtype=str),
        }


def invert_folder(model_dir: Path, folder: Path, actors: int = 2, batch_size: int = 250) -> dict[str, np.ndarray]:
    import ray

    files = ray.data.read_binary_files(str(folder), include_paths=True)
    # A fixed pool of actors, one CPU each; Ray's file-reading tasks need CPUs of their own, so a cluster needs
    # more logical CPUs than actors (on a 2-CPU laptop: ray.init(num_cpus=4) — else the reads wait forever).
    pool = ray.data.ActorPoolStrategy(size=actors)
    rows = files.map_batches(Inverter, fn_constructor_args=(str(model_dir), batch_size), batch_size=batch_size,
                             compute=pool, num_cpus=1).take_all()  # fmt: skip
    root = str(folder.resolve()).rstrip("/") + "/"
    table = sorted((str(row["name"]).split(root, 1)[-1], row["z"], str(row["error"])) for row in rows)
    kept = [(name, z) for name, z, error in table if not error]
    errors = [(name, error) for name, _, error in table if error]
    return {
        "z": np.stack([z for _, z in kept]).astype(np.float32),
        "names": np.array([name for name, _ in kept], dtype=str),
        "errors": np.array(errors, dtype=str).reshape(len(errors), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args()
    from service.store import npz_bytes, write_atomic

    arrays = invert_folder(args.model, args.input, args.actors)
    write_atomic(args.out, npz_bytes(arrays))
    print(f"{len(arrays['names'])} latents, {len(arrays['errors'])} skipped → {args.out}")


if __name__ == "__main__":
    main()
