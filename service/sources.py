"""Where a job's images come from, read one chunk at a time: a data-set split, an uploaded zip or tar, or (the
offline twin) a folder. Every source has a fixed input order — split index, or sorted member / file names — so a
chunk [start, stop) is the same images on every worker and every attempt.

An upload is checked once, when it arrives (`inspect_archive`): names that are absolute or climb out with `..`
and duplicate names refuse the archive (422); a member that declares more bytes than max_image_bytes, more members
than max_job_images, or a compressed tar that inflates past max_job_expanded_bytes refuse it too (413: zip and tar
bombs stop before anything is inflated past the limit). What is wrong with one member's *content* — not an image,
a corrupt or encrypted entry, an unsupported compression — is found by the chunk that reads it and skipped with
that reason (the job's `errors`), so one bad file never costs a folder's worth of work.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from dfi_core.bundle import ImageSpec
from dfi_core.datasets import load_split
from service.errors import APIError
from service.images import decode_image
from service.store import JobFolder

IGNORED_PREFIXES = ("__MACOSX/",)  # macOS Finder's resource forks: never images, never worth an error line
_COPY_BLOCK = 1 << 20
# What zipfile raises for a damaged entry: BadZipFile (bad CRC — also what a lying declared size ends in, since
# reading stops at the declared size —, a local header that disagrees with the directory), zlib.error (a corrupt
# deflate stream), lzma.LZMAError / struct.error (a garbage LZMA stream or its properties header), OSError (bz2's
# "Invalid data stream"), EOFError (a stream that ends early), ValueError (offsets that point before the file's
# start: "negative seek value").
_CORRUPT_ENTRY = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, struct.error, OSError, EOFError, ValueError)


@dataclass(frozen=True)
class DecodeLimits:
    max_image_bytes: int
    max_image_pixels: int


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_image_bytes: int
    max_expanded_bytes: int


@dataclass
class Batch:
    """One chunk's usable images, in input order, and the members skipped with their reasons."""

    names: list[str]
    images: np.ndarray  # [N, H, W, C] uint8
    labels: np.ndarray | None  # [N] int, data-set splits only
    errors: list[tuple[str, str]] = field(default_factory=list)


class Source:
    count: int
    labelled: bool = False
    description: str = ""

    def read(self, start: int, stop: int) -> Batch:
        raise NotImplementedError


@lru_cache(maxsize=4)
def _split(dataset: str, split: str):  # noqa: ANN202 — a worker reads one split for many chunks: load it once
    return load_split(dataset, split)


class SplitSource(Source):
    labelled = True

    def __init__(self, dataset: str, split: str, n: int) -> None:
        self.data = _split(dataset, split)
        self.count = min(n, len(self.data.images))
        self.description = f"{self.data.name}/{self.data.split} ({self.data.source})"

    def read(self, start: int, stop: int) -> Batch:
        stop = min(stop, len(self.data.images))  # a plan made where the split was not at hand may run past it
        names = [str(i) for i in range(start, stop)]
        return Batch(names, self.data.images[start:stop], self.data.labels[start:stop])


def split_class_names(dataset: str, split: str) -> list[str]:
    return list(_split(dataset, split).class_names)


def per_class_refusal(source: dict[str, Any]) -> str | None:
    """Why a `per_class` metric job cannot run on this source (None: it can). Per-class scores group images by
    their true label; only a data-set split carries labels."""
    if source.get("type") == "split":
        return None
    what = {"archive": "an uploaded archive", "folder": "a folder"}.get(source.get("type", ""), "this source")
    return (
        f"per_class needs the true label of every image, and {what} carries none; run per_class on a data-set "
        "split (POST /jobs with dataset and split)"
    )


def decode_items(items: list[tuple[str, bytes | str]], image: ImageSpec, limits: DecodeLimits) -> Batch:
    """(name, bytes or a reason already found) → the decoded ones and the reasons for the rest."""
    names, images, errors = [], [], []
    for name, content in items:
        if isinstance(content, str):
            errors.append((name, content))
            continue
        try:
            images.append(decode_image(content, image, name, limits.max_image_bytes, limits.max_image_pixels))
            names.append(name)
        except APIError as error:
            errors.append((name, error.message.removeprefix(f"{name}: ")))
    shape = (0, image.height, image.width, image.channels)
    return Batch(names, np.stack(images) if images else np.zeros(shape, np.uint8), None, errors)


class ArchiveSource(Source):
    """An upload checked by `inspect_archive`: its `members.json` lists the images in input order."""

    def __init__(self, folder: JobFolder, image: ImageSpec, limits: DecodeLimits) -> None:
        self.index = folder.read_json(folder.members)
        self.path = folder.root / self.index["archive"]
        self.members = self.index["members"]
        self.count = len(self.members)
        self.image, self.limits = image, limits
        self.description = f"upload ({self.index['format']}, {self.count} files)"

    def read(self, start: int, stop: int) -> Batch:
        wanted = self.members[start:stop]
        if self.index["format"] == "zip":
            archive = _open_zip(str(self.path), *_identity(self.path))
            items = [(name, _zip_member(archive, name, self.limits.max_image_bytes)) for name in wanted]
        else:
            with self.path.open("rb") as handle:
                items = [(name, _tar_member(handle, offset, size)) for name, offset, size in wanted]
        return decode_items(items, self.image, self.limits)


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=4)
def _open_zip(path: str, inode: int, size: int, mtime_ns: int) -> zipfile.ZipFile:
    """One parsed zip per worker process and archive: reading the central directory of a 10,000-member zip takes
    ~40 ms, which every chunk of the job paid again (measured: a tenth of a 1000-image chunk's time). Keyed by the
    file's identity, so a replaced file is parsed anew; at most 4 stay open (a removed job's file is freed when
    its entry leaves the cache). zipfile reads members of one ZipFile safely from several threads."""
    return zipfile.ZipFile(path)


def _zip_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes | str:
    """One entry's bytes, or the reason it cannot be read."""
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:  # zipfile would raise RuntimeError("... password required"): say so up front
        return "encrypted entries are not supported; zip it without a password"
    try:
        with archive.open(info) as member:
            return member.read(limit + 1)  # at most the declared size (≤ limit, checked at upload) — never past it
    except NotImplementedError as error:  # Deflate64 (method 9) and the like; patched data, strong encryption
        return (f"compression method {info.compress_type} or flags {info.flag_bits:#x} not supported ({error}); "
                "zip it with stored or deflate")  # fmt: skip
    except _CORRUPT_ENTRY as error:
        return f"corrupt zip entry ({error or type(error).__name__})"


def _tar_member(handle: BinaryIO, offset: int, size: int) -> bytes | str:
    handle.seek(offset)
    data = handle.read(size)
    return data if len(data) == size else f"truncated tar member ({len(data)} of {size} bytes)"


class FolderSource(Source):
    """The offline twin's `--input DIR`: every regular file under DIR (recursively), sorted by relative path."""

    def __init__(self, root: Path, image: ImageSpec, limits: DecodeLimits) -> None:
        self.root = root
        self.files = sorted(
            p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        self.count = len(self.files)
        self.image, self.limits = image, limits
        self.description = f"folder {root} ({self.count} files)"

    def read(self, start: int, stop: int) -> Batch:
        items: list[tuple[str, bytes | str]] = []
        for name in self.files[start:stop]:
            path = self.root / name
            size = path.stat().st_size
            items.append((name, path.read_bytes() if size <= self.limits.max_image_bytes
                          else f"{size} bytes > max_image_bytes ({self.limits.max_image_bytes})"))  # fmt: skip
        return decode_items(items, self.image, self.limits)


def open_source(spec: dict[str, Any], folder: JobFolder, image: ImageSpec, limits: DecodeLimits) -> Source:
    kind = spec["type"]
    if kind == "split":
        return SplitSource(spec["dataset"], spec["split"], spec["n"])
    if kind == "archive":
        return ArchiveSource(folder, image, limits)
    if kind == "folder":
        return FolderSource(Path(spec["path"]), image, limits)
    raise ValueError(f"unknown source type {kind!r}")


# ---- checking an upload -----------------------------------------------------------------------------------------


def unsafe_name(name: str) -> str | None:
    """Why a member name is refused (path traversal), or None. Checked although members are never extracted:
    the names come back to the client in `names`, and other tools extract what this one accepted."""
    text = name.replace("\\", "/")
    if "\x00" in text:
        return "holds a NUL character"
    if text.startswith("/") or (len(text) > 1 and text[0].isalpha() and text[1] == ":"):  # a Windows drive
        return "is an absolute path"
    if ".." in PurePosixPath(text).parts:
        return "climbs out of the archive with '..'"
    return None


def _check_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        why = unsafe_name(name)
        if why:
            raise APIError(422, f"archive: member {name[:200]!r} {why}; refused (path traversal)")
        if name in seen:
            raise APIError(422, f"archive: member {name[:200]!r} appears twice; names must be unique")
        seen.add(name)


def _check_count(count: int, limits: ArchiveLimits) -> None:
    if count > limits.max_members:
        raise APIError(413, f"archive: {count} files > max_job_images", limit={"max_job_images": limits.max_members})


def _too_big(name: str, size: int, limits: ArchiveLimits) -> APIError:
    return APIError(413, f"archive: {name[:200]} inflates to {size} bytes > max_image_bytes",
                    limit={"max_image_bytes": limits.max_image_bytes})  # fmt: skip


def _inspect_zip(path: Path, limits: ArchiveLimits) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith(IGNORED_PREFIXES)]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, struct.error, OSError, EOFError, ValueError,
            NotImplementedError) as error:  # fmt: skip
        # A damaged central directory can surface as any of these (a negative seek is ValueError; a garbled
        # "version needed to extract" is NotImplementedError("zip file version 21.9")).
        raise APIError(415, f"archive: not a zip file this server can read ({error})") from None
    names = [i.filename for i in infos]
    _check_names(names)
    _check_count(len(infos), limits)
    total = 0
    for info in infos:
        if info.file_size > limits.max_image_bytes:  # the declared size, checked before inflating: bombs stop here
            raise _too_big(info.filename, info.file_size, limits)
        total += info.file_size
    if total > limits.max_expanded_bytes:
        raise APIError(413, f"archive: inflates to {total} bytes > max_job_expanded_bytes",
                       limit={"max_job_expanded_bytes": limits.max_expanded_bytes})  # fmt: skip
    return {"format": "zip", "members": sorted(names), "skipped": []}


_COMPRESSED_TAR = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


def _inflate_tar(path: Path, opener: Any, target: Path, limits: ArchiveLimits) -> None:
    """A compressed tar → an uncompressed one beside it (chunks then seek to their members instead of inflating
    the whole stream each), stopping at max_job_expanded_bytes: a tar bomb never fills the store."""
    written = 0
    try:
        with opener(path, "rb") as source, target.open("wb") as out:
            while block := source.read(_COPY_BLOCK):
                written += len(block)
                if written > limits.max_expanded_bytes:
                    raise APIError(413, f"archive: the compressed tar inflates past {limits.max_expanded_bytes} "
                                        "bytes (max_job_expanded_bytes)",
                                   limit={"max_job_expanded_bytes": limits.max_expanded_bytes})  # fmt: skip
                out.write(block)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as error:
        target.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is not None:
            raise  # the store's own fault (full disk, ...): the caller names it
        raise APIError(415, f"archive: corrupt compressed tar ({error or type(error).__name__})") from None
    except APIError:
        target.unlink(missing_ok=True)
        raise


def _inspect_tar(path: Path, limits: ArchiveLimits) -> dict[str, Any]:
    members, skipped = [], []
    try:
        with tarfile.open(path, "r:") as archive:
            for info in archive:
                if info.isdir() or info.name.startswith(IGNORED_PREFIXES):
                    continue
                if not info.isreg():
                    _check_names([info.name])
                    skipped.append((info.name, "not a regular file (a link or device): skipped"))
                    _check_count(len(members) + len(skipped), limits)  # every entry costs a line in members.json
                    continue
                members.append((info.name, info.offset_data, info.size))
                _check_count(len(members) + len(skipped), limits)
    except tarfile.TarError as error:
        raise APIError(415, f"archive: not a tar file this server can read ({error})") from None
    _check_names([name for name, _, _ in members])
    for name, _, size in members:
        if size > limits.max_image_bytes:
            raise _too_big(name, size, limits)
    members.sort()
    return {"format": "tar", "members": [list(m) for m in members], "skipped": sorted(skipped)}


def _plain_tar(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:"):
            return True
    except tarfile.TarError:
        return False


def inspect_archive(received: Path, folder: JobFolder, limits: ArchiveLimits, keep: bool = False) -> dict[str, Any]:
    """Check an archive (zip, tar, tar.gz/.bz2/.xz) and write the job folder's members.json. An upload (keep
    False) is moved into the folder; the offline twin's input (keep True) is read where it lies, except that a
    compressed tar is inflated into the folder either way. Raises APIError (4xx) for an archive refused whole."""
    with received.open("rb") as handle:
        head = handle.read(8)
    opener = next((open_ for magic, open_ in _COMPRESSED_TAR.items() if head.startswith(magic)), None)
    # A zip is found by its directory at the file's *end*: a plain tar whose last member is a zip (or whose last
    # 64 KiB hold the signature by chance) would pass for that zip, so a tar's own header, at the start, goes first.
    if opener is None and not _plain_tar(received) and zipfile.is_zipfile(received):
        index = _inspect_zip(received, limits)
        final = received.resolve() if keep else folder.upload(".zip")
        if not keep:
            received.replace(final)
    else:
        final = folder.upload(".tar") if opener is not None or not keep else received.resolve()
        if opener is not None:
            _inflate_tar(received, opener, final, limits)
            if not keep:
                received.unlink()
        elif not keep:
            received.replace(final)
        if not tarfile.is_tarfile(final):
            if final.parent == folder.root:
                final.unlink()
            raise APIError(415, "archive: neither a zip nor a tar file (plain, .gz, .bz2 or .xz)")
        index = _inspect_tar(final, limits)
    if not index["members"]:
        skipped = f" ({len(index['skipped'])} links or devices skipped)" if index["skipped"] else ""
        raise APIError(422, f"archive: holds no files{skipped}")
    # Relative inside the folder (a shared volume mounts at different paths on API and workers), else absolute.
    index["archive"] = final.name if final.parent == folder.root else str(final)
    folder.write_json(folder.members, index)
    return index
