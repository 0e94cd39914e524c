"""Job inputs (service/sources.py): an upload is checked whole once (`inspect_archive`: traversal names, bombs,
formats), then read a chunk at a time in a fixed order, and every container gives the same images."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dfi_core.bundle import load_bundle
from service.errors import APIError
from service.sources import (
    ArchiveLimits,
    ArchiveSource,
    DecodeLimits,
    FolderSource,
    SplitSource,
    inspect_archive,
    open_source,
)
from service.store import JobFolder
from tests.service.conftest import MODELS, png_bytes

IMAGE = load_bundle(MODELS / "fashion-mnist").manifest.image
LIMITS = ArchiveLimits(max_members=100, max_image_bytes=1 << 20, max_expanded_bytes=8 << 20)
DECODE = DecodeLimits(max_image_bytes=1 << 20, max_image_pixels=16_000_000)
N = 12


# ---- building real archives -----------------------------------------------------------------------------------


def _zip(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar(entries: list[tuple[str, bytes] | tarfile.TarInfo], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
                continue
            name, data = entry
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _pngs(fashion_test) -> list[tuple[str, bytes]]:
    # Written in reverse so that input order (sorted names) is not just insertion order.
    return [(f"img_{i:02d}.png", png_bytes(fashion_test.images[i])) for i in reversed(range(N))]


@pytest.fixture
def job(tmp_path: Path) -> JobFolder:
    (tmp_path / "job").mkdir()
    return JobFolder(tmp_path / "job")


def _received(tmp_path: Path, data: bytes, name: str = "receiving") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _refused(tmp_path: Path, job: JobFolder, data: bytes, status: int, limits: ArchiveLimits = LIMITS) -> APIError:
    with pytest.raises(APIError) as caught:
        inspect_archive(_received(tmp_path, data), job, limits)
    assert caught.value.status == status, caught.value.message
    assert not job.members.exists()  # a refused archive never gets an index
    return caught.value


def _read_all(tmp_path: Path, job: JobFolder, data: bytes):
    inspect_archive(_received(tmp_path, data), job, LIMITS)
    source = ArchiveSource(job, IMAGE, DECODE)
    return source, source.read(0, source.count)


# ---- refused whole --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["/etc/x.png", "../x.png", "a/../../x.png", "a\\..\\..\\x.png", "C:\\x.png", "C:/x.png", "\\\\srv\\x.png"]
)
@pytest.mark.parametrize("container", ["zip", "tar"])
def test_traversal_names_refuse_the_archive(tmp_path: Path, job: JobFolder, fashion_test, name, container) -> None:
    entries = [("ok.png", png_bytes(fashion_test.images[0])), (name, png_bytes(fashion_test.images[1]))]
    data = _zip(entries) if container == "zip" else _tar(entries)
    error = _refused(tmp_path, job, data, 422)
    assert "path traversal" in error.message and repr(name) in error.message


def test_a_traversal_name_on_a_tar_link_refuses_too(tmp_path: Path, job: JobFolder, fashion_test) -> None:
    data = _tar([("ok.png", png_bytes(fashion_test.images[0])), _symlink("../evil", "/etc/passwd")])
    assert "climbs out" in _refused(tmp_path, job, data, 422).message


def test_duplicate_zip_names_refuse_the_archive(tmp_path: Path, job: JobFolder, fashion_test) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile itself warns, and writes both
        data = _zip([("a.png", png_bytes(fashion_test.images[0])), ("a.png", png_bytes(fashion_test.images[1]))])
    assert "appears twice" in _refused(tmp_path, job, data, 422).message


def test_duplicate_tar_names_refuse_the_archive(tmp_path: Path, job: JobFolder, fashion_test) -> None:
    data = _tar([("a.png", png_bytes(fashion_test.images[0])), ("a.png", png_bytes(fashion_test.images[1]))])
    assert "appears twice" in _refused(tmp_path, job, data, 422).message


def test_zip_bomb_member_is_refused_from_its_declared_size(tmp_path: Path, job: JobFolder) -> None:
    zeros = b"\0" * (5 * 1024 * 1024)
    bomb = _zip([("bomb.png", zeros)])
    assert len(bomb) < 64 * 1024  # a real bomb: 5 MiB of zeros deflates to a few KiB
    error = _refused(tmp_path, job, bomb, 413)
    assert error.limit == {"max_image_bytes": LIMITS.max_image_bytes}
    assert str(len(zeros)) in error.message
    assert sorted(p.name for p in job.root.iterdir()) == []  # nothing moved in, nothing inflated

    # The size is the one the directory *declares*, read before anything inflates: a member whose data is 5 bytes
    # but whose directory entry claims 2 GiB is refused the same way (inflating it would fail, not say 413).
    small = bytearray(_zip([("liar.png", b"12345")], compression=zipfile.ZIP_STORED))
    directory = small.rindex(b"PK\x01\x02")
    struct.pack_into("<I", small, directory + 24, 0x7FFFFFFF)  # central directory: uncompressed size
    error = _refused(tmp_path, job, bytes(small), 413)
    assert "2147483647" in error.message


def test_too_many_members_are_refused(tmp_path: Path, job: JobFolder, fashion_test) -> None:
    limits = ArchiveLimits(max_members=4, max_image_bytes=1 << 20, max_expanded_bytes=8 << 20)
    entries = _pngs(fashion_test)[:5]
    for data in (_zip(entries), _tar(entries)):
        error = _refused(tmp_path, job, data, 413, limits)
        assert error.limit == {"max_job_images": 4}
    # Exactly at the limit is accepted.
    assert len(inspect_archive(_received(tmp_path, _zip(entries[:4])), job, limits)["members"]) == 4


def test_zip_declared_total_above_max_expanded_bytes_is_refused(tmp_path: Path, job: JobFolder) -> None:
    limits = ArchiveLimits(max_members=100, max_image_bytes=512 * 1024, max_expanded_bytes=1 << 20)
    part = b"\0" * (400 * 1024)  # each member is under max_image_bytes; three are over the total
    error = _refused(tmp_path, job, _zip([("a.png", part), ("b.png", part), ("c.png", part)]), 413, limits)
    assert error.limit == {"max_job_expanded_bytes": 1 << 20}
    assert str(3 * len(part)) in error.message


@pytest.mark.parametrize("keep", [False, True])
def test_tar_gz_bomb_stops_at_max_expanded_bytes(tmp_path: Path, job: JobFolder, keep: bool) -> None:
    limits = ArchiveLimits(max_members=100, max_image_bytes=16 << 20, max_expanded_bytes=1 << 20)
    bomb = _tar([("zeros.png", b"\0" * (5 * 1024 * 1024))], mode="w:gz")
    assert len(bomb) < 64 * 1024  # a real gzip of a tar of zeros: 5 MiB → a few KiB
    received = _received(tmp_path, bomb)
    with pytest.raises(APIError) as caught:
        inspect_archive(received, job, limits, keep=keep)
    assert caught.value.status == 413
    assert caught.value.limit == {"max_job_expanded_bytes": 1 << 20}
    assert list(job.root.iterdir()) == []  # the partly inflated tar is removed, no members.json
    assert received.read_bytes() == bomb  # the upload itself is the caller's to remove (the whole job folder)


def test_neither_zip_nor_tar_is_415(tmp_path: Path, job: JobFolder) -> None:
    for data in (b"hello, not an archive\n" * 100, b"", png_bytes(np.zeros((28, 28, 1), np.uint8))):
        error = _refused(tmp_path, job, data, 415)
        assert "neither a zip nor a tar" in error.message
        assert list(job.root.iterdir()) == []  # the moved-in upload is removed again


def test_corrupt_compressed_tar_is_415(tmp_path: Path, job: JobFolder) -> None:
    data = _tar([("a.png", b"x" * 5000)], mode="w:gz")
    error = _refused(tmp_path, job, data[: len(data) // 2], 415)  # a gzip stream that ends early
    assert "corrupt compressed tar" in error.message
    assert list(job.root.iterdir()) == []
    not_a_tar = gzip.compress(b"plain text, gzipped, but no tar inside\n" * 50)
    assert "neither a zip nor a tar" in _refused(tmp_path, job, not_a_tar, 415).message
    assert list(job.root.iterdir()) == []


def test_archives_without_files_are_422(tmp_path: Path, job: JobFolder) -> None:
    assert "holds no files" in _refused(tmp_path, job, _zip([]), 422).message
    assert "holds no files" in _refused(tmp_path, job, _zip([("__MACOSX/._a.png", b"fork")]), 422).message
    folder_only = tarfile.TarInfo("dir")
    folder_only.type = tarfile.DIRTYPE
    error = _refused(tmp_path, job, _tar([folder_only, _symlink("link.png", "elsewhere.png")]), 422)
    assert "holds no files (1 links or devices skipped)" in error.message


# ---- the same images from every container ---------------------------------------------------------------------


def test_every_container_gives_the_same_images(tmp_path: Path, fashion_test) -> None:
    entries = _pngs(fashion_test)
    expected_names = [f"img_{i:02d}.png" for i in range(N)]
    archives = {
        "zip": _zip(entries),
        "zip-stored": _zip(entries, compression=zipfile.ZIP_STORED),
        "tar": _tar(entries),
        "tar.gz": _tar(entries, mode="w:gz"),
        "tar.bz2": _tar(entries, mode="w:bz2"),
        "tar.xz": _tar(entries, mode="w:xz"),
    }
    batches = {}
    for kind, data in archives.items():
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "job").mkdir()
        folder = JobFolder(tmp_path / kind / "job")
        index = inspect_archive(_received(tmp_path / kind, data), folder, LIMITS)
        assert index["format"] == ("zip" if kind.startswith("zip") else "tar"), kind
        source = ArchiveSource(folder, IMAGE, DECODE)
        assert source.count == N and f"{N} files" in source.description
        batches[kind] = source.read(0, N)
    files = tmp_path / "folder"
    for name, data in entries:
        (files / name).parent.mkdir(parents=True, exist_ok=True)
        (files / name).write_bytes(data)
    (files / ".DS_Store").write_bytes(b"hidden files are not inputs")
    batches["folder"] = FolderSource(files, IMAGE, DECODE).read(0, N)

    for kind, batch in batches.items():
        assert batch.names == expected_names, kind
        assert batch.errors == [], kind
        assert batch.labels is None, kind
        assert batch.images.dtype == np.uint8 and batch.images.shape == (N, 28, 28, 1), kind
        # PNG is lossless and 28×28 is the bundle's size (no resize): equal to the data set's pixels exactly.
        assert np.array_equal(batch.images, fashion_test.images[:N]), kind


def test_split_source_reads_the_data_set_in_index_order(fashion_test) -> None:
    source = open_source({"type": "split", "dataset": "fashion-mnist", "split": "test", "n": N}, None, IMAGE, DECODE)
    assert isinstance(source, SplitSource) and source.count == N and source.labelled
    batch = source.read(4, N + 3)  # a plan that runs past n still stops at the split's end, not at n
    assert batch.names == [str(i) for i in range(4, N + 3)]
    assert np.array_equal(batch.images, fashion_test.images[4 : N + 3])
    assert np.array_equal(batch.labels, fashion_test.labels[4 : N + 3])


# ---- bad members are skipped, one reason each -----------------------------------------------------------------


def _mixed(fashion_test) -> list[tuple[str, bytes]]:
    png = png_bytes(fashion_test.images[2])
    return [
        ("b_good.png", png_bytes(fashion_test.images[1])),
        ("a_good.png", png_bytes(fashion_test.images[0])),
        ("c_notes.txt", b"these are not pixels\n"),
        ("d_truncated.png", png[: len(png) // 2]),
        ("e_empty.png", b""),
        ("f_good.png", png),
        ("__MACOSX/._a_good.png", b"\0\5\26\7resource fork"),
    ]


@pytest.mark.parametrize("container", ["zip", "tar"])
def test_bad_members_are_skipped_with_a_reason(tmp_path: Path, job: JobFolder, fashion_test, container) -> None:
    entries = _mixed(fashion_test)
    data = _zip(entries) if container == "zip" else _tar([*entries, _symlink("g_link.png", "a_good.png")])
    source, batch = _read_all(tmp_path, job, data)
    index = job.read_json(job.members)
    listed = [m if isinstance(m, str) else m[0] for m in index["members"]]
    assert listed == ["a_good.png", "b_good.png", "c_notes.txt", "d_truncated.png", "e_empty.png", "f_good.png"]
    assert not any("__MACOSX" in name for name in listed)  # ignored: neither a member nor an error

    assert batch.names == ["a_good.png", "b_good.png", "f_good.png"]  # input order of the good ones
    assert np.array_equal(batch.images, fashion_test.images[[0, 1, 2]])
    reasons = dict(batch.errors)
    assert [name for name, _ in batch.errors] == ["c_notes.txt", "d_truncated.png", "e_empty.png"]
    assert "not an image" in reasons["c_notes.txt"]
    assert "truncated" in reasons["d_truncated.png"]
    assert reasons["e_empty.png"] == "empty file"
    assert not any(reason.startswith(name) for name, reason in batch.errors)  # the name is not repeated
    if container == "tar":
        # A link is listed with its reason at upload (never followed, never read), not a chunk's error.
        assert index["skipped"] == [["g_link.png", "not a regular file (a link or device): skipped"]]
        assert "g_link.png" not in reasons
    else:
        assert index["skipped"] == []


def test_a_member_too_large_for_decoding_is_one_error(tmp_path: Path, job: JobFolder, fashion_test) -> None:
    entries = _pngs(fashion_test)[-2:]  # img_00, img_01
    (tmp_path / "files").mkdir()
    for name, data in entries:
        (tmp_path / "files" / name).write_bytes(data)
    big = tmp_path / "files" / "zz_big.png"
    big.write_bytes(b"\0" * 4096)  # the PNGs here are under 1 KiB
    batch = FolderSource(tmp_path / "files", IMAGE, DecodeLimits(2048, 16_000_000)).read(0, 3)
    assert batch.names == ["img_00.png", "img_01.png"]
    assert batch.errors == [("zz_big.png", "4096 bytes > max_image_bytes (2048)")]


def test_a_tar_whose_last_member_is_a_zip_stays_a_tar(tmp_path: Path, job: JobFolder, fashion_test) -> None:
    # A zip is recognised by its directory at the *end* of the file; a tar ending in a zip member has one there.
    inner = _zip([("inner.png", png_bytes(fashion_test.images[5]))])
    data = _tar([("a.png", png_bytes(fashion_test.images[0])), ("b.png", png_bytes(fashion_test.images[1])),
                 ("z.zip", inner)])  # fmt: skip
    assert zipfile.is_zipfile(io.BytesIO(data))  # the trap is real
    source, batch = _read_all(tmp_path, job, data)
    assert source.index["format"] == "tar"
    assert batch.names == ["a.png", "b.png"]
    assert np.array_equal(batch.images, fashion_test.images[:2])
    assert [name for name, _ in batch.errors] == ["z.zip"]  # the zip member is not an image


# ---- chunks ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["zip", "w", "w:gz"])
def test_chunks_read_exactly_their_slice(tmp_path: Path, job: JobFolder, fashion_test, mode: str) -> None:
    entries = _pngs(fashion_test)
    source, whole = _read_all(tmp_path, job, _zip(entries) if mode == "zip" else _tar(entries, mode=mode))
    first, second = source.read(0, 5), source.read(5, N)
    assert first.names == whole.names[:5] and second.names == whole.names[5:]
    assert np.array_equal(np.concatenate([first.images, second.images]), whole.images)
    middle = source.read(3, 7)
    assert middle.names == [f"img_{i:02d}.png" for i in range(3, 7)]
    assert np.array_equal(middle.images, fashion_test.images[3:7])
    again = ArchiveSource(job, IMAGE, DECODE).read(3, 7)  # another worker, another attempt: the same images
    assert again.names == middle.names and np.array_equal(again.images, middle.images)
    empty = source.read(N, N + 5)
    assert empty.names == [] and empty.images.shape == (0, 28, 28, 1)


# ---- keep (offline CLI) vs move (upload) ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["zip", "w"])
def test_keep_reads_the_input_where_it_lies(tmp_path: Path, job: JobFolder, fashion_test, mode: str) -> None:
    entries = _pngs(fashion_test)
    data = _zip(entries) if mode == "zip" else _tar(entries)
    received = _received(tmp_path, data, "input.archive")
    index = inspect_archive(received, job, LIMITS, keep=True)
    assert received.read_bytes() == data  # the offline CLI's input is never moved or changed
    assert index["archive"] == str(received.resolve()) and Path(index["archive"]).is_absolute()
    assert sorted(p.name for p in job.root.iterdir()) == ["members.json"]
    assert job.read_json(job.members)["archive"] == str(received.resolve())
    assert ArchiveSource(job, IMAGE, DECODE).read(0, N).names == [f"img_{i:02d}.png" for i in range(N)]


def test_keep_inflates_a_compressed_tar_into_the_folder(tmp_path: Path, job: JobFolder, fashion_test) -> None:
    data = _tar(_pngs(fashion_test), mode="w:xz")
    received = _received(tmp_path, data, "input.tar.xz")
    index = inspect_archive(received, job, LIMITS, keep=True)
    assert received.read_bytes() == data
    assert index["archive"] == "upload.tar" and job.upload(".tar").is_file()
    assert np.array_equal(ArchiveSource(job, IMAGE, DECODE).read(0, N).images, fashion_test.images[:N])


@pytest.mark.parametrize(("mode", "name"), [("zip", "upload.zip"), ("w", "upload.tar"), ("w:bz2", "upload.tar")])
def test_upload_is_moved_into_the_folder(tmp_path: Path, job: JobFolder, fashion_test, mode: str, name: str) -> None:
    entries = _pngs(fashion_test)
    data = _zip(entries) if mode == "zip" else _tar(entries, mode=mode)
    received = _received(tmp_path, data)
    index = inspect_archive(received, job, LIMITS)
    assert not received.exists()
    assert index["archive"] == name  # relative: the volume mounts at different paths on API and workers
    assert sorted(p.name for p in job.root.iterdir()) == sorted(["members.json", name])
    if mode == "zip":
        assert job.upload(".zip").read_bytes() == data
    assert ArchiveSource(job, IMAGE, DECODE).read(0, N).names == [f"img_{i:02d}.png" for i in range(N)]
