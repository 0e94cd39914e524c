"""POST /jobs/upload as a careless or hostile client sends it: every refusal a 4xx naming the problem, and nothing
of a refused upload left in the result store. A real Redis; no worker (nothing here needs a job to run)."""

from __future__ import annotations

import io
import zipfile

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.embedded_redis import free_port
from tests.service.conftest import make_settings, png_bytes


@pytest.fixture(scope="module")
def upload(redis_url: str):  # noqa: ANN201
    with TestClient(create_app(make_settings(redis_url))) as client:
        yield client


@pytest.fixture(scope="module")
def archive(fashion_test) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for i in range(3):
            zipped.writestr(f"{i}.png", png_bytes(fashion_test.images[i]))
    return buffer.getvalue()


def _leftovers(client: TestClient) -> list[str]:
    root = client.app.state.settings.results_dir
    return sorted(p.name for p in root.iterdir() if p.name != "expired") if root.is_dir() else []


def _refused(client: TestClient, status: int, needle: str, **kwargs) -> None:  # noqa: ANN003
    before = _leftovers(client)
    response = client.post("/jobs/upload", **kwargs)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"], response.json()
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
    assert _leftovers(client) == before  # the refused upload's folder is gone


def test_form_fields_are_checked_by_name(upload: TestClient, archive: bytes) -> None:
    files = {"archive": ("a.zip", archive, "application/zip")}
    _refused(upload, 422, "unknown form field 'colour'", files=files, data={"colour": "red"})
    _refused(
        upload, 422, "metrics apply to kind 'metrics' only", files=files, data={"kind": "invert", "metrics": "psnr"}
    )
    _refused(upload, 422, "return_reconstructions applies to kind 'invert' only", files=files,
             data={"return_reconstructions": "true"})  # fmt: skip
    _refused(upload, 422, "return_reconstructions: give true or false", files=files,
             data={"kind": "invert", "return_reconstructions": "maybe"})  # fmt: skip
    _refused(upload, 422, "invalid job: kind", files=files, data={"kind": "everything"})
    _refused(upload, 422, "invalid job: refine_steps", files=files, data={"refine_steps": "-3"})
    _refused(upload, 413, "longer than 4096 bytes", files=files, data={"model": "m" * 5000})
    _refused(upload, 404, "unknown model 'nope'", files=files, data={"model": "nope"})


def test_the_multipart_body_itself_is_checked(upload: TestClient, archive: bytes) -> None:
    _refused(upload, 415, "send multipart/form-data", json={"archive": "x"})
    _refused(upload, 422, "no `archive` part", data={"kind": "invert"}, files={"model": (None, "fashion-mnist")})
    two = [("archive", ("a.zip", archive, "application/zip")), ("archive", ("b.zip", archive, "application/zip"))]
    _refused(upload, 422, "one `archive` part, not several", files=two)
    boundary = "b0undary"
    header = f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="a.zip"\r\nX-Junk: '
    body = header.encode() + b"j" * 10_000 + b"\r\n\r\n" + archive + f"\r\n--{boundary}--\r\n".encode()
    # python-multipart's own header limit answers first ("Maximum header size exceeded"); ours is the backstop.
    _refused(upload, 422, "Maximum header size exceeded", content=body,
             headers={"content-type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    broken = f"--{boundary}\r\nno headers here at all".encode()
    response = upload.post("/jobs/upload", content=broken,
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    assert response.status_code in (413, 422), response.text  # never a 500


def test_archives_refused_whole_leave_nothing_behind(upload: TestClient, fashion_test) -> None:
    for name, status, needle in [("../escape.png", 422, "climbs out"), ("/etc/x.png", 422, "absolute path")]:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zipped:
            zipped.writestr("fine.png", png_bytes(fashion_test.images[0]))
            zipped.writestr(name, png_bytes(fashion_test.images[1]))
        _refused(upload, status, needle, files={"archive": ("a.zip", buffer.getvalue(), "application/zip")})
    _refused(upload, 415, "neither a zip nor a tar", files={"archive": ("a.zip", b"just some bytes" * 100)})
    _refused(upload, 422, "holds no files", files={"archive": ("a.zip", _empty_zip())})


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    return buffer.getvalue()


def test_an_accepted_upload_is_planned_into_chunks(upload: TestClient, archive: bytes) -> None:
    response = upload.post("/jobs/upload", files={"archive": ("a.zip", archive, "application/zip")},
                           data={"kind": "invert", "return_reconstructions": "1"})  # fmt: skip
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "invert" and job["chunks"] == {"total": 1, "done": 0, "running": 0, "failed": 0}
    assert job["request"]["n"] == 3 and job["request"]["return_reconstructions"] is True
    assert job["request"]["archive_bytes"] == len(archive) and "metrics" not in job["request"]
    folder = upload.app.state.settings.results_dir / job["id"]
    assert (folder / "upload.zip").read_bytes() == archive and (folder / "plan.json").is_file()


def test_a_redis_outage_is_503_before_the_upload_is_read(archive: bytes) -> None:
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as offline:
        response = offline.post("/jobs/upload", files={"archive": ("a.zip", archive, "application/zip")})
        assert response.status_code == 503 and "job queue unavailable" in response.json()["error"]["message"]
        assert not settings.results_dir.exists() or not any(settings.results_dir.iterdir())
