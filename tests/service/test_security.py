"""Access control: API keys (401 vs 403, constant-time match), per-key rate limits (429 + Retry-After), CORS."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.security import match_key
from tests.service.conftest import make_settings

KEYS = ["k" * 16 + "-first", "k" * 16 + "-second"]


@pytest.fixture(scope="module")
def keyed(redis_url: str):
    with TestClient(create_app(make_settings(redis_url, api_keys=KEYS, rate_limit="5/minute"))) as client:
        yield client


def test_missing_key_is_401_wrong_key_403_right_key_200(keyed: TestClient) -> None:
    missing = keyed.get("/models")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json()["error"]["request_id"]
    assert keyed.get("/models", headers={"X-API-Key": "k" * 22}).status_code == 403
    assert keyed.get("/models", headers={"X-API-Key": KEYS[0]}).status_code == 200
    assert keyed.get("/models", headers={"Authorization": f"Bearer {KEYS[1]}"}).status_code == 200


def test_probes_need_no_key(keyed: TestClient) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/metrics").status_code == 200


def test_rate_limit_is_per_key_with_retry_after(keyed: TestClient) -> None:
    headers = {"X-API-Key": KEYS[1]}
    codes = [keyed.get("/models", headers=headers).status_code for _ in range(6)]
    assert 429 in codes
    limited = keyed.get("/models", headers=headers)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["limit"] == {"rate_limit": "5 per 1 minute"}
    # The other key has its own window (it was used twice above, in the first test).
    assert keyed.get("/models", headers={"X-API-Key": KEYS[0]}).status_code == 200


def test_keys_never_reach_metrics(keyed: TestClient) -> None:
    keyed.get("/models", headers={"X-API-Key": KEYS[0]})
    assert KEYS[0] not in keyed.get("/metrics").text


def test_match_key_compares_every_key() -> None:
    assert match_key(KEYS[1], KEYS) == 1
    assert match_key("x" * 16, KEYS) is None


def test_short_keys_and_bad_rate_limits_are_refused_before_start() -> None:
    with pytest.raises(ValidationError, match="at least 16"):
        make_settings(None, api_keys=["short"])
    with pytest.raises(ValidationError, match="rate_limit"):
        make_settings(None, rate_limit="lots")


def test_cors_is_off_by_default_and_on_when_configured(redis_url: str) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(make_settings(redis_url))) as plain:
        assert "access-control-allow-origin" not in plain.options("/invert", headers=preflight).headers
    with TestClient(create_app(make_settings(redis_url, cors_origins=["https://example.org"]))) as cors:
        response = cors.options("/invert", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://example.org"


def test_the_upload_limit_is_its_own_and_may_exceed_the_body_limit(redis_url: str, fashion_test) -> None:
    # Issue 18: uploads stream into the result store, so max_job_upload_bytes is no longer capped by max_body_bytes.
    import io
    import zipfile

    from tests.service.conftest import png_bytes

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # stored, not deflated: well over the 2 KiB body limit
        for i in range(8):
            archive.writestr(f"{i}.png", png_bytes(fashion_test.images[i]))
    body = buffer.getvalue()
    assert len(body) > 2048
    settings = make_settings(redis_url, max_body_bytes=2048, max_job_upload_bytes=len(body) + 1024)
    with TestClient(create_app(settings)) as client:
        files = {"archive": ("a.zip", body, "application/zip")}
        assert client.post("/jobs/upload", files=files).status_code == 202
        assert client.post("/invert", content=body, headers={"content-type": "application/json"}).status_code == 413


def test_the_page_loads_without_a_key_but_its_api_calls_need_one(keyed: TestClient) -> None:
    assert keyed.get("/").status_code == 200
    assert keyed.get("/static/app.js").status_code == 200
    assert keyed.post("/invert", json={"images": ["aGk="]}).status_code == 401
