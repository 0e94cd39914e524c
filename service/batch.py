"""`python -m service.batch`: the offline twin of an invert job — no Redis, no API, the same chunk files.

    python -m service.batch invert --model models/fashion-mnist --input photos/ --out runs/latents
    python -m service.batch invert --model DIR --input images.zip --out OUT --shard 0/4   # one of 4 processes
    python -m service.batch merge --out OUT

It writes OUT/plan.json, OUT/chunks/NNNNN.npz and, once every chunk is there, OUT/result.npz — the layout and the
bytes of a job's folder in the result store (service.chunks and service.store are shared with the worker), so
the same input gives a byte-identical result.npz by either path. Re-running resumes: chunks already written are
skipped. `--shard i/N` takes chunks i, i+N, i+2N, …: N processes (a Kubernetes indexed Job, a Slurm array) share
one OUT folder, and whichever finishes last merges (or run `merge` after them). A folder whose plan differs (other
bundle bytes, input, chunking or refinement) is refused, never mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dfi_core.refinement import RefinementUnavailable
from service.chunks import JobSpec, NoUsableImages, chunk_images, make_plan, merge_invert, run_chunk
from service.errors import APIError
from service.metrics import ApiMetrics
from service.settings import Settings
from service.sources import ArchiveLimits, DecodeLimits, Source, inspect_archive, open_source
from service.store import JobFolder, StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])


def _fail(message: str) -> typer.Exit:
    typer.echo(f"batch: {message}", err=True)
    return typer.Exit(2)


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise _fail(f"--shard {text!r}: give i/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise _fail(f"--shard {text!r}: need 0 ≤ i < N")
    return index, count


def _source(input_path: Path, folder: JobFolder, settings: Settings, model: Any) -> tuple[dict[str, Any], Source]:
    image, decode = model.bundle.manifest.image, DecodeLimits(settings.max_image_bytes, settings.max_image_pixels)
    if input_path.is_dir():
        spec: dict[str, Any] = {"type": "folder", "path": str(input_path.resolve())}
        source = open_source(spec, folder, image, decode)
        listing = [(name, (input_path / name).stat().st_size) for name in source.files]  # type: ignore[attr-defined]
    elif input_path.is_file():
        limits = ArchiveLimits(settings.max_job_images, settings.max_image_bytes, settings.max_job_expanded_bytes)
        inspect_archive(input_path, folder, limits, keep=True)  # re-read each run: the input may have changed
        spec = {"type": "archive", "input": str(input_path.resolve()), "bytes": input_path.stat().st_size}
        source = open_source(spec, folder, image, decode)
        listing = folder.read_json(folder.members)["members"]
    else:
        raise _fail(f"--input {input_path}: no such folder or file")
    # What the input holds, in the plan: resuming into a folder made from other files is refused.
    spec["listing_sha256"] = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    return spec, source


def _check_plan(folder: JobFolder, plan: dict[str, Any]) -> None:
    if not folder.plan.is_file():
        folder.write_json(folder.plan, plan)
        return
    written = folder.read_json(folder.plan)
    if written != plan:
        differs = sorted(key for key in {*plan, *written} if plan.get(key) != written.get(key))
        raise _fail(f"{folder.root} holds chunks of another plan (differs in: {', '.join(differs)}); "
                    "use a new --out folder")  # fmt: skip


def _merge(folder: JobFolder, plan: dict[str, Any]) -> dict[str, Any] | None:
    missing = [i for i in range(len(plan["chunks"])) if not folder.has_chunk(i)]
    if missing:
        return None
    summary = merge_invert(folder, plan)
    return {"result": str(folder.result), **{k: v for k, v in summary.items() if k != "errors"}}


@app.command("invert")
def invert_command(
    model: Annotated[Path, typer.Option(help="a bundle folder (models/NAME)")],
    input: Annotated[Path, typer.Option(help="a folder of images, or a zip / tar(.gz|.bz2|.xz) of them")],
    out: Annotated[Path, typer.Option(help="output folder: plan.json, chunks/, result.npz")],
    shard: Annotated[str, typer.Option(help="i/N: this process takes chunks i, i+N, …")] = "0/1",
    refine_steps: Annotated[int, typer.Option(min=0, help="DFI^opt: Adam steps on z from ẑ (IJCV eq. 2)")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="rows per graph call")] = 250,
    chunk_size: Annotated[int | None, typer.Option(min=1, help="images per chunk (default: as the service)")] = None,
    reconstructions: Annotated[bool, typer.Option(help="also store G(z) as uint8 images")] = False,
) -> None:
    """Invert every image of INPUT with the bundle's DFI (and refinement), chunk by chunk, resumable."""
    from service.registry import load_model

    index, count = parse_shard(shard)
    settings = Settings()
    if not (model / "manifest.json").is_file():
        raise _fail(f"--model {model}: no manifest.json (a bundle folder is models/NAME)")
    loaded = load_model(model, settings, ApiMetrics())
    folder = JobFolder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        source_spec, source = _source(input, folder, settings, loaded)
        spec = JobSpec("invert", refine_steps, batch_size, (), reconstructions)
        size = chunk_size or chunk_images(settings.job_chunk_images, refine_steps)
        plan = make_plan(spec, loaded, source_spec, source.count, size)
        _check_plan(folder, plan)
        mine = [i for i in range(len(plan["chunks"])) if i % count == index]
        done = sum(folder.has_chunk(i) for i in mine)
        typer.echo(f"batch: {source.count} inputs, {len(plan['chunks'])} chunks; shard {index}/{count} has "
                   f"{len(mine)}, {done} already written", err=True)  # fmt: skip
        threads = settings.torch_threads or (os.cpu_count() or 1)
        for i in mine:
            started = time.perf_counter()
            start, stop = plan["chunks"][i]
            if run_chunk(folder, i, (start, stop), source, loaded, spec, threads):
                typer.echo(f"batch: chunk {i} (inputs {start}–{stop - 1}) {time.perf_counter() - started:.2f} s",
                           err=True)  # fmt: skip
        summary = _merge(folder, plan)
    except APIError as error:
        raise _fail(error.message) from None
    except (StoreError, OSError) as error:
        raise _fail(str(error)) from None
    except NoUsableImages as error:
        raise _fail(str(error)) from None
    except RefinementUnavailable as error:
        raise _fail(f"--refine-steps: {error.reason}") from None
    typer.echo(json.dumps(summary or {"merged": False, "missing": "other shards' chunks"}))


@app.command("merge")
def merge_command(out: Annotated[Path, typer.Option(help="the folder the shards wrote")]) -> None:
    """Merge the chunk files of OUT into OUT/result.npz (once every shard is done)."""
    folder = JobFolder(out)
    if not folder.plan.is_file():
        raise _fail(f"{out}: no plan.json (run `invert` first)")
    plan = folder.read_json(folder.plan)
    missing = [i for i in range(len(plan["chunks"])) if not folder.has_chunk(i)]
    if missing:
        raise _fail(f"{len(missing)} of {len(plan['chunks'])} chunks missing (first: {missing[:5]})")
    try:
        typer.echo(json.dumps(_merge(folder, plan)))
    except NoUsableImages as error:
        raise _fail(str(error)) from None


def main() -> None:
    app(prog_name=f"{os.path.basename(sys.executable)} -m service.batch")


if __name__ == "__main__":
    main()
