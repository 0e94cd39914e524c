"""The result store: uploads, chunk files and merged results of jobs, outside Redis (Redis carries metadata only).

A directory (`DFI_RESULTS_DIR`; a shared volume when API and workers run on several machines) with one folder per
job, laid out exactly as the offline twin (`python -m service.batch`) writes its output folder:

    <results_dir>/<job id>/
        job.json            when it expires (updated when the job finishes), what it is
        upload.zip|.tar     the uploaded archive (a compressed tar is inflated once, at upload)
        members.json        the archive's image members, in input order (sorted names)
        chunks/00000.npz    one per chunk, written atomically by whichever worker ran it
        result.npz          the merged result (invert jobs), written atomically
    <results_dir>/expired/<job id>   a tombstone: the job existed and expired (so the API answers 410, not 404)

Every write goes to a temporary name in the same folder and is renamed into place (POSIX rename is atomic), so a
reader never sees a partial file under a final name — a worker SIGKILLed mid-write leaves only a `.tmp-*` file that
the next attempt overwrites. OS errors that no retry fixes (no space, read-only, not a folder, file too large)
become `StoreError` with a message naming the store, which fails the job with that message.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_DIGITS = 5
_STORE_ERRNOS = {
    errno.ENOSPC: "no space left",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the store's file system or limits",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a path component is not a folder",
    errno.EEXIST: "a path exists where a folder should be",
}
# np.savez stamps the current time into every zip member, so two runs of one job would differ in bytes; members
# written here carry this fixed time (the zip format's epoch) and ZIP_STORED, so a result is a function of its data.
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class StoreError(Exception):
    """The result store cannot take a write (full, read-only, ...): fails the job, is never retried."""


def store_error(error: OSError, where: Path) -> StoreError | None:
    reason = _STORE_ERRNOS.get(error.errno or -1)
    if reason is None:
        return None
    return StoreError(f"result store: cannot write {where} ({reason}: {error.strerror or error})")


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A .npz (readable by np.load, allow_pickle=False) whose bytes depend only on `arrays` and their order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            array = np.asarray(array)
            if array.dtype == object:
                raise TypeError(f"{name}: object arrays would need pickle")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """`data` at `path`, all or nothing (temporary file in the same folder, fsync, rename)."""
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):  # ENOTDIR again when the parent is a file: keep the first error
            temporary.unlink(missing_ok=True)
        raise store_error(error, path) or error from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}


def chunk_name(index: int) -> str:
    return f"{index:0{CHUNK_DIGITS}d}.npz"


class JobFolder:
    """One job's files (also the offline twin's `--out` folder: same names, same formats)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def chunks(self) -> Path:
        return self.root / "chunks"

    @property
    def result(self) -> Path:
        return self.root / "result.npz"

    @property
    def members(self) -> Path:
        return self.root / "members.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    def chunk(self, index: int) -> Path:
        return self.chunks / chunk_name(index)

    def upload(self, suffix: str) -> Path:
        return self.root / f"upload{suffix}"

    def has_chunk(self, index: int) -> bool:
        return self.chunk(index).is_file()

    def write_chunk(self, index: int, arrays: Mapping[str, np.ndarray]) -> None:
        write_atomic(self.chunk(index), npz_bytes(arrays))

    def write_json(self, path: Path, value: Any) -> None:
        write_atomic(path, json.dumps(value, indent=1, sort_keys=True).encode())

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text())


class ResultStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, job_id: str) -> JobFolder:
        # ids are hex uuids: never a path, never the tombstones' folder
        if not job_id or "/" in job_id or job_id.startswith(".") or job_id == "expired":
            raise ValueError(f"bad job id {job_id[:40]!r}")
        return JobFolder(self.root / job_id)

    def create(self, job_id: str, expires: float, info: dict[str, Any]) -> JobFolder:
        folder = self.folder(job_id)
        try:
            folder.root.mkdir(parents=True, exist_ok=False)
        except OSError as error:
            raise store_error(error, folder.root) or error from None
        folder.write_json(folder.root / "job.json", {**info, "expires": expires})
        return folder

    def set_expiry(self, job_id: str, expires: float) -> None:
        folder = self.folder(job_id)
        path = folder.root / "job.json"
        if path.is_file():
            folder.write_json(path, {**folder.read_json(path), "expires": expires})

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id).root, ignore_errors=True)

    def _tombstone(self, job_id: str) -> Path:
        return self.root / "expired" / job_id

    def expired(self, job_id: str) -> float | None:
        """When the job's files expired (a tombstone), or None if the store never had them."""
        path = self._tombstone(job_id)
        try:
            return float(path.read_text() or 0)
        except (OSError, ValueError):
            return None

    def sweep(self, now: float | None = None, tombstone_ttl_s: float = 30 * 24 * 3600) -> list[str]:
        """Remove every job folder past its expiry (leaving a tombstone) and tombstones older than their TTL."""
        now = time.time() if now is None else now
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        for path in self.root.iterdir():
            info = path / "job.json"
            if path.name == "expired" or not info.is_file():
                continue
            try:
                expires = float(json.loads(info.read_text())["expires"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or not ours: leave it
            if expires <= now:
                stone = self._tombstone(path.name)
                try:
                    write_atomic(stone, str(now).encode())
                    os.utime(stone, (now, now))  # its age is measured on the same clock as `now` (below)
                except (StoreError, OSError):
                    pass  # a full store is when removing matters most: the job then answers 404, not 410
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        stones = self.root / "expired"
        if stones.is_dir():
            for stone in stones.iterdir():
                try:
                    if stone.stat().st_mtime + tombstone_ttl_s <= now:
                        stone.unlink(missing_ok=True)
                except FileNotFoundError:
                    continue  # another worker's sweep removed it between iterdir and stat
        return removed
