"""Issue 19, items 3 and 4: corrupt zip entries on /jobs/upload (skipped with their reason since issue 18) and
chunked bodies over max_body_bytes.

Each archive is built here with zipfile and then byte-patched into the damage the outside probe sent; every one
must be accepted (202) and its entry skipped with a reason naming the damage, never a 500. Chunked bodies go
through httpx's ASGI transport with an async generator, so the app really receives several `http.request`
messages and no Content-Length.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.conftest import make_settings, png_bytes

MEMBER = "shirt.png"


def _zip(data: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr(MEMBER, data)
    return buffer.getvalue()


def _patch_both_headers(raw: bytes, local_offset: int, central_offset: int, fmt: str, value: int) -> bytes:
    """Write `value` at the same field of the local file header and of the central directory entry."""
    out = bytearray(raw)
    local, central = raw.index(b"PK\x03\x04"), raw.index(b"PK\x01\x02")
    struct.pack_into(fmt, out, local + local_offset, value)
    struct.pack_into(fmt, out, central + central_offset, value)
    return bytes(out)


def _data_offset(raw: bytes) -> int:
    local = raw.index(b"PK\x03\x04")
    name_len, extra_len = struct.unpack_from("<HH", raw, local + 26)
    return local + 30 + name_len + extra_len


def bad_crc(png: bytes) -> bytes:
    raw = _zip(png)
    crc = zipfile.ZipFile(io.BytesIO(raw)).infolist()[0].CRC
    return _patch_both_headers(raw, 14, 16, "<I", crc ^ 0xFFFF)


def lying_size(png: bytes) -> bytes:
    # The declared (uncompressed) size is half the real one: reading stops there and the CRC cannot match.
    return _patch_both_headers(_zip(png), 22, 24, "<I", len(png) // 2)


def cut_entry(png: bytes) -> bytes:
    # Bytes cut out of the entry's data with the directory left as it was: its offsets now point before the
    # start of the file (zipfile: ValueError "negative seek value").
    raw = _zip(png, zipfile.ZIP_LZMA)
    start = _data_offset(raw)
    end_of_data = start + zipfile.ZipFile(io.BytesIO(raw)).infolist()[0].compress_size
    return raw[: start + 3] + raw[end_of_data:]


def encrypted_flag(png: bytes) -> bytes:
    return _patch_both_headers(_zip(png), 6, 8, "<H", 0x1)


def deflate64(png: bytes) -> bytes:
    return _patch_both_headers(_zip(png), 8, 10, "<H", 9)  # compression method 9: zipfile cannot inflate it


def lzma_garbage(png: bytes) -> bytes:
    raw = bytearray(_zip(png, zipfile.ZIP_LZMA))
    start = _data_offset(bytes(raw))
    raw[start + 4 : start + 40] = bytes(range(7, 43))  # keep the 4-byte LZMA properties header, garble the rest
    return bytes(raw)


def corrupt_deflate(png: bytes) -> bytes:
    raw = bytearray(_zip(png))
    start = _data_offset(bytes(raw))
    raw[start : start + 8] = b"\xff" * 8  # block type 3 is reserved: zlib.error "invalid block type"
    return bytes(raw)


@pytest.fixture(scope="module")
def upload_client(redis_url: str):  # noqa: ANN201
    with TestClient(create_app(make_settings(redis_url))) as client:
        yield client


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (bad_crc, "corrupt zip entry"),
        (lying_size, "corrupt zip entry"),
        (cut_entry, "corrupt zip entry"),
        (encrypted_flag, "encrypted"),
        (deflate64, "compression method 9"),
        (lzma_garbage, "corrupt zip entry"),
        (corrupt_deflate, "corrupt zip entry"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_corrupt_archive_entries_are_skipped_with_a_named_reason(
    upload_client: TestClient, fashion_test, damage: Callable[[bytes], bytes], needle: str
) -> None:
    from service.sources import ArchiveSource, DecodeLimits

    png = png_bytes(fashion_test.images[0])
    intact = zipfile.ZipFile(io.BytesIO(_zip(png))).read(MEMBER)
    assert intact == png  # the unpatched archive is sound: the damage alone makes the difference
    response = upload_client.post("/jobs/upload", files={"archive": ("a.zip", damage(png), "application/zip")})
    # The archive's directory is sound, so it is accepted; the entry's content is what a chunk finds wrong
    # (issue 18: one bad member is skipped with its reason, it does not refuse the folder).
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"]
    settings = upload_client.app.state.settings
    folder = upload_client.app.state.store.folder(response.json()["id"])
    image = upload_client.app.state.registry.get(None).bundle.manifest.image
    batch = ArchiveSource(folder, image, DecodeLimits(settings.max_image_bytes, settings.max_image_pixels)).read(0, 1)
    assert batch.names == [] and len(batch.errors) == 1, batch.errors
    name, reason = batch.errors[0]
    assert name == MEMBER and needle in reason, reason


LIMIT = 4096
ROUTES = ["/invert", "/edit", "/outpaint", "/jobs", "/jobs/upload"]


def _bodies(route: str) -> list[tuple[str, bytes]]:
    """(content type, a body well over LIMIT) pairs a client could plausibly send to `route`."""
    padding = b"A" * (4 * LIMIT)
    json_body = b'{"images": ["' + padding + b'"]}'
    boundary = "probe0boundary"
    field = "archive" if route == "/jobs/upload" else "images"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="x.png"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + padding
        + f"\r\n--{boundary}--\r\n".encode()
    )
    multipart_type = f"multipart/form-data; boundary={boundary}"
    if route == "/jobs/upload":
        return [(multipart_type, multipart)]
    if route == "/invert":
        return [("application/json", json_body), (multipart_type, multipart)]
    return [("application/json", json_body)]


async def _chunks(body: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def _post_chunked(app, requests: list[tuple[str, str, bytes]]) -> list[httpx.Response]:  # noqa: ANN001
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = []
            for route, content_type, body in requests:
                headers = {"content-type": content_type, "x-request-id": f"probe-{len(responses)}"}
                request = client.build_request("POST", route, content=_chunks(body), headers=headers)
                assert "content-length" not in request.headers and request.headers["transfer-encoding"] == "chunked"
                responses.append(await client.send(request))
            return responses


def test_chunked_bodies_over_the_limit_are_413_on_every_route(redis_url: str) -> None:
    app = create_app(make_settings(redis_url, max_body_bytes=LIMIT, max_job_upload_bytes=LIMIT // 2))
    requests = [(route, kind, body) for route in ROUTES for kind, body in _bodies(route)]
    responses = asyncio.run(_post_chunked(app, requests))
    for index, ((route, kind, _), response) in enumerate(zip(requests, responses, strict=True)):
        where = f"{route} {kind}: {response.status_code} {response.text}"
        assert response.status_code == 413, where
        error = response.json()["error"]
        # The job upload has its own limit (it streams to the result store); every other route max_body_bytes.
        setting, limit = ("max_job_upload_bytes", LIMIT // 2) if route == "/jobs/upload" else ("max_body_bytes", LIMIT)
        assert error["limit"] == {setting: limit} and setting in error["message"], where
        assert error["request_id"] == f"probe-{index}" == response.headers["x-request-id"], where


def test_a_chunked_body_under_the_limit_is_served(redis_url: str) -> None:
    app = create_app(make_settings(redis_url, max_body_bytes=LIMIT, max_job_upload_bytes=LIMIT // 2))
    zeros, halves = ",".join(["0.0"] * 64), ",".join(["0.5"] * 64)
    text = f'{{"latents": [[{zeros}]], "vector": [{halves}], "vector_strength": 2, "return_images": false}}'
    body = text.encode()
    assert len(body) < LIMIT
    (response,) = asyncio.run(_post_chunked(app, [("/edit", "application/json", body)]))
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["latent"] == pytest.approx([1.0] * 64)  # z + strength · vector


def test_a_declared_content_length_over_the_limit_carries_the_request_id(redis_url: str) -> None:
    with TestClient(create_app(make_settings(redis_url, max_body_bytes=LIMIT, max_job_upload_bytes=LIMIT))) as small:
        response = small.post("/edit", content=b"{" + b" " * (2 * LIMIT) + b"}",
                              headers={"content-type": "application/json", "x-request-id": "declared-1"})  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"]["request_id"] == "declared-1" == response.headers["x-request-id"]
    assert response.json()["error"]["limit"] == {"max_body_bytes": LIMIT}
