"""The result store (service/store.py): fixed-byte .npz, atomic writes that turn real OS faults into StoreError,
job ids that are never paths, and the TTL sweep with its tombstones (410, not 404)."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from service.store import JobFolder, ResultStore, StoreError, npz_bytes, read_npz, store_error, write_atomic

ROOT = Path(__file__).resolve().parents[2]


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "z": rng.standard_normal((7, 16)).astype(np.float32),
        "reconstructions": rng.integers(0, 256, (7, 28, 28, 1), dtype=np.uint8),
        "names": np.array(["a.png", "sub/b.png", "ünïcode.png"]),
        "errors": np.zeros((0, 2), dtype=str),
    }


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".tmp-*"))


# ---- npz_bytes ------------------------------------------------------------------------------------------------


def test_npz_bytes_are_a_function_of_the_arrays() -> None:
    first = npz_bytes(_arrays())
    time.sleep(2.1)  # zip stores times in 2 s steps: a time-stamping writer would differ after this
    assert npz_bytes(_arrays()) == first
    # np.savez (what this replaces) stamps the wall clock into its members' headers.
    stamps = {info.date_time for info in zipfile.ZipFile(io.BytesIO(first)).infolist()}
    assert stamps == {(1980, 1, 1, 0, 0, 0)}
    # Order matters and is kept (the bytes depend on the arrays *and* their order).
    assert npz_bytes(dict(reversed(list(_arrays().items())))) != first


def test_npz_bytes_round_trip_values_and_dtypes(tmp_path: Path) -> None:
    arrays = _arrays()
    path = tmp_path / "r.npz"
    path.write_bytes(npz_bytes(arrays))
    with np.load(path, allow_pickle=False) as loaded:
        assert loaded.files == list(arrays)
        for name, array in arrays.items():
            assert loaded[name].dtype == array.dtype, name
            assert loaded[name].shape == array.shape, name
            assert np.array_equal(loaded[name], array), name
    back = read_npz(path)
    assert back["errors"].shape == (0, 2) and back["errors"].dtype.kind == "U"
    assert back["names"].tolist() == ["a.png", "sub/b.png", "ünïcode.png"]
    assert back["z"].dtype == np.float32 and back["reconstructions"].dtype == np.uint8


def test_npz_bytes_accepts_non_contiguous_views() -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2]  # a strided view: written in C order, read back equal
    loaded = np.load(io.BytesIO(npz_bytes({"v": view})), allow_pickle=False)
    assert np.array_equal(loaded["v"], view)


def test_npz_bytes_refuses_object_arrays() -> None:
    with pytest.raises(TypeError, match="bad: object arrays"):
        npz_bytes({"ok": np.zeros(2), "bad": np.array([{"a": 1}, None], dtype=object)})


# ---- write_atomic ---------------------------------------------------------------------------------------------


def test_write_atomic_writes_the_whole_file_and_no_temporaries(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    target = tmp_path / "deep" / "er" / "result.npz"  # missing folders are made
    write_atomic(target, data)
    assert target.read_bytes() == data
    write_atomic(target, b"second")  # replacing an existing file is all or nothing too
    assert target.read_bytes() == b"second"
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.npz"]


@pytest.mark.parametrize("below", ["x.npz", "sub/x.npz"], ids=["parent-is-file", "ancestor-is-file"])
def test_write_atomic_under_a_regular_file_is_a_store_error(tmp_path: Path, below: str) -> None:
    # A real ENOTDIR / EEXIST from the OS (works as root, unlike chmod): the store has a file where a folder goes.
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a folder")
    target = blocker / below
    with pytest.raises(StoreError) as caught:
        write_atomic(target, b"data")
    message = str(caught.value)
    assert f"cannot write {target} " in message  # the final path, not the temporary one
    assert ".tmp-" not in message
    assert "not a folder" in message or "exists where a folder should be" in message
    assert blocker.read_bytes() == b"not a folder"
    assert _leftovers(tmp_path) == []


def test_write_atomic_file_too_large_is_a_store_error(tmp_path: Path) -> None:
    # RLIMIT_FSIZE is a real EFBIG from the kernel (SIGXFSZ ignored, so write() fails instead of killing us).
    # It runs in a child so the limit cannot touch this process's own files.
    target = tmp_path / "chunks" / "00000.npz"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        from service.store import StoreError, write_atomic
        target = Path({str(target)!r})
        target.parent.mkdir(parents=True)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        try:
            write_atomic(target, b"x" * (1024 * 1024))
        except StoreError as error:
            print("StoreError:", error)
            sys.exit(0)
        except BaseException as error:
            print("other:", type(error).__name__, error)
            sys.exit(2)
        print("no error")
        sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "file too large" in done.stdout and str(target) in done.stdout
    assert not target.exists()  # nothing partial under the final name
    assert list(target.parent.iterdir()) == []  # and the temporary was removed


def test_store_error_maps_only_unrecoverable_errnos(tmp_path: Path) -> None:
    full = store_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert isinstance(full, StoreError) and "no space left" in str(full) and str(tmp_path) in str(full)
    assert store_error(OSError(errno.EIO, "I/O error"), tmp_path) is None  # not a store verdict: raised as is
    assert store_error(OSError("no errno"), tmp_path) is None


def test_job_folder_json_and_chunks(tmp_path: Path) -> None:
    (tmp_path / "job").mkdir()
    folder = JobFolder(tmp_path / "job")
    assert not folder.has_chunk(3)
    folder.write_chunk(3, {"z": np.ones((2, 4), np.float32)})
    assert folder.has_chunk(3) and folder.chunk(3).name == "00003.npz"
    assert np.array_equal(read_npz(folder.chunk(3))["z"], np.ones((2, 4), np.float32))
    folder.write_json(folder.members, {"b": [1], "a": "x"})
    assert folder.read_json(folder.members) == {"a": "x", "b": [1]}
    assert _leftovers(tmp_path) == []


# ---- ResultStore ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["", "a/b", "../x", ".hidden", ".", "..", "/abs"])
def test_folder_refuses_ids_that_are_paths(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(ValueError, match="bad job id"):
        ResultStore(tmp_path).folder(job_id)


def test_create_and_set_expiry(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    folder = store.create("a" * 32, 1000.0, {"kind": "invert"})
    assert folder.root == tmp_path / "results" / ("a" * 32)
    info = folder.read_json(folder.root / "job.json")
    assert info == {"kind": "invert", "expires": 1000.0}
    store.set_expiry("a" * 32, 5000.0)
    assert folder.read_json(folder.root / "job.json") == {"kind": "invert", "expires": 5000.0}
    store.set_expiry("b" * 32, 1.0)  # a job without a folder: nothing is created
    assert not (tmp_path / "results" / ("b" * 32)).exists()
    with pytest.raises(StoreError, match="exists"):  # one folder per id: a second create is refused
        store.create("a" * 32, 1.0, {})


def test_sweep_removes_expired_folders_and_leaves_tombstones(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    old, new = "0" * 32, "1" * 32
    store.create(old, 1000.0, {}).write_chunk(0, {"z": np.zeros(3, np.float32)})
    store.create(new, 3000.0, {})
    (tmp_path / "stray-file").write_text("not a job")
    (tmp_path / "no-job-json").mkdir()
    assert store.expired(old) is None and store.expired(new) is None

    assert store.sweep(now=2000.0) == [old]
    assert not (tmp_path / old).exists()
    assert store.expired(old) == 2000.0  # the API answers 410 (expired), not 404 (never existed)
    assert (tmp_path / new / "job.json").is_file() and store.expired(new) is None
    assert (tmp_path / "stray-file").is_file() and (tmp_path / "no-job-json").is_dir()  # not ours: left

    assert store.sweep(now=2500.0) == []  # nothing more to do; the tombstone stays
    assert store.expired(old) == 2000.0


def test_sweep_skips_a_job_json_being_written(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "job.json").write_text('{"expi')  # torn / foreign: never a reason to delete
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "job.json").write_text(json.dumps({"kind": "no expiry"}))
    assert store.sweep(now=1e12) == []
    assert (tmp_path / "c").is_dir() and (tmp_path / "d").is_dir()


def test_tombstones_expire_after_their_ttl_on_the_sweeps_clock(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    job = "2" * 32
    store.create(job, 1000.0, {})
    ttl = 3600.0
    assert store.sweep(now=2000.0, tombstone_ttl_s=ttl) == [job]
    store.sweep(now=2000.0 + ttl - 1, tombstone_ttl_s=ttl)
    assert store.expired(job) == 2000.0  # younger than its TTL: kept
    store.sweep(now=2000.0 + ttl, tombstone_ttl_s=ttl)
    assert store.expired(job) is None  # older: the store forgets the job (404 from then on)
    assert list((tmp_path / "expired").iterdir()) == []


def test_sweep_of_a_missing_store_is_empty(tmp_path: Path) -> None:
    assert ResultStore(tmp_path / "none").sweep(now=1.0) == []


def test_remove_deletes_the_folder(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.create("3" * 32, 1.0, {}).write_json(tmp_path / ("3" * 32) / "plan.json", {"n": 1})
    store.remove("3" * 32)
    assert not (tmp_path / ("3" * 32)).exists()
    store.remove("3" * 32)  # idempotent


def test_sweep_survives_a_tombstone_that_vanishes_under_it(tmp_path: Path) -> None:
    # Several workers sweep one store: a tombstone listed by iterdir may be gone by the time it is stat()ed. A
    # dangling symlink gives the same real FileNotFoundError from stat() deterministically.
    store = ResultStore(tmp_path)
    (tmp_path / "expired").mkdir()
    (tmp_path / "expired" / ("4" * 32)).symlink_to(tmp_path / "expired" / "gone")
    store.create("5" * 32, 1000.0, {})
    assert store.sweep(now=2000.0, tombstone_ttl_s=10.0) == ["5" * 32]
    store.sweep(now=2010.0, tombstone_ttl_s=10.0)  # the real, old tombstone is still removed past the other
    assert store.expired("5" * 32) is None
