"""Issue 19, "where the docs and the service disagree": an empty metrics list, too many multipart files and
DFI_API_KEYS written as operators write it — each answered by a 4xx (or a start-up error) naming the setting."""

from __future__ import annotations

import io
import zipfile

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.schemas import METRICS
from service.settings import Settings
from tests.service.conftest import make_settings, png_bytes

KEY = "k" * 16


def test_an_empty_metrics_list_is_refused_naming_the_allowed_metrics(client: TestClient) -> None:
    response = client.post("/jobs", json={"metrics": []})
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "metrics" in message and all(name in message for name in METRICS)


@pytest.mark.parametrize("metrics", ["", " , ", "psnr,nope"])
def test_an_upload_without_valid_metrics_is_refused_naming_metrics(client: TestClient, fashion_test,
                                                                   metrics: str) -> None:  # fmt: skip
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", png_bytes(fashion_test.images[0]))
    response = client.post("/jobs/upload", files={"archive": ("a.zip", archive.getvalue(), "application/zip")},
                           data={"metrics": metrics})  # fmt: skip
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "metrics" in message and (metrics == "psnr,nope" or all(name in message for name in METRICS))


def test_an_upload_without_a_metrics_field_scores_the_default_metrics(client: TestClient, fashion_test) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", png_bytes(fashion_test.images[0]))
    response = client.post("/jobs/upload", files={"archive": ("a.zip", archive.getvalue(), "application/zip")})
    assert response.status_code == 202, response.text
    assert response.json()["request"]["metrics"] == ["psnr", "ssim"]


@pytest.mark.parametrize("count", [3, 30])
def test_too_many_multipart_files_is_413_naming_the_setting(redis_url: str, fashion_test, count: int) -> None:
    png = png_bytes(fashion_test.images[0])
    with TestClient(create_app(make_settings(redis_url, max_images_per_request=2))) as small:
        response = small.post("/invert", files=[("images", (f"{i}.png", png, "image/png")) for i in range(count)])
        within = small.post("/invert", files=[("images", (f"{i}.png", png, "image/png")) for i in range(2)])
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["limit"] == {"max_images_per_request": 2} and "DFI_MAX_IMAGES_PER_REQUEST" in error["message"]
    assert within.status_code == 200 and len(within.json()["results"]) == 2


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        (f"{KEY}1", [f"{KEY}1"]),
        (f" {KEY}1 , {KEY}2,", [f"{KEY}1", f"{KEY}2"]),
        (f'["{KEY}1", "{KEY}2"]', [f"{KEY}1", f"{KEY}2"]),
        ("", []),
    ],
)
def test_api_keys_read_comma_separated_or_json(monkeypatch: pytest.MonkeyPatch, raw: str, keys: list[str]) -> None:
    monkeypatch.setenv("DFI_API_KEYS", raw)
    assert Settings().api_keys == keys


@pytest.mark.parametrize("raw", ["k1", f"{KEY},tinykey", "[not json", '{"a": 1}', "[1, 2]"])
def test_bad_api_keys_are_one_line_naming_the_setting_without_the_keys(monkeypatch: pytest.MonkeyPatch,
                                                                       raw: str) -> None:  # fmt: skip
    monkeypatch.setenv("DFI_API_KEYS", raw)
    with pytest.raises(ValidationError) as caught:
        Settings()
    (error,) = caught.value.errors()
    assert error["loc"] == ("api_keys",) and "DFI_API_KEYS" in error["msg"] and "\n" not in error["msg"]
    assert "tinykey" not in error["msg"] and "k1" not in error["msg"]


def test_300_files_on_the_default_settings_name_256(client: TestClient, fashion_test) -> None:
    png = png_bytes(fashion_test.images[0])
    response = client.post("/invert", files=[("images", (f"{i}.png", png, "image/png")) for i in range(300)])
    assert response.status_code == 413, response.text
    assert response.json()["error"]["limit"] == {"max_images_per_request": 256}
