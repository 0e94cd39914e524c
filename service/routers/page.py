"""The web page for people: GET / → service/static/index.html, and /static (HTML, CSS, JS modules, test images).

Static files only — no build step: the page calls the same JSON API as every other client (GET /models, POST /invert,
/edit, /outpaint, /jobs). `python -m service.routers.page` rewrites the test images in service/static/samples/ from
the real test splits (the first Fashion-MNIST test image of each class; two emoji of the test split).
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
SAMPLES_DIR = STATIC_DIR / "samples"
EMOJI_SAMPLES = ("boy", "girl")  # People & Body: the emoji bundle's directions (hair, man_to_woman, skin) act here

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    # no-cache: the browser revalidates (ETag) so a new service version's page is picked up at once.
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


class _StaticFiles(StaticFiles):
    """StaticFiles that puts its Mount in the scope, as FastAPI routes do, so the request metrics count its files
    under route="/static" rather than "unmatched"."""

    mount: Mount | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.mount
        await super().__call__(scope, receive, send)


def mount_static(app: FastAPI) -> None:
    """Serve service/static at /static (index.html loads style.css, app.js and its modules from there)."""
    files = _StaticFiles(directory=STATIC_DIR)
    app.mount("/static", files, name="static")
    files.mount = next(r for r in app.router.routes if isinstance(r, Mount) and r.app is files)


def write_samples(folder: Path = SAMPLES_DIR) -> dict[str, list[dict[str, str | int]]]:
    """PNG test images for the page's "pick a test image" and an index.json naming them, per data set."""
    from PIL import Image

    from dfi_core.datasets import load_emoji, load_split

    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, list[dict[str, str | int]]] = {"fashion-mnist": [], "emoji": []}
    fashion = load_split("fashion-mnist", "test")
    for label, name in enumerate(fashion.class_names):
        i = int((fashion.labels == label).argmax())  # the first test image of this class
        file = f"fashion-mnist-{i:05d}.png"
        Image.fromarray(fashion.images[i, :, :, 0]).save(folder / file, optimize=True)
        index["fashion-mnist"].append({"file": file, "label": name, "index": i})
    emoji = load_emoji("test", attribute_keys=("short_name",))  # = load_split("emoji", "test"), with names
    names = emoji.attributes["short_name"]
    for wanted in EMOJI_SAMPLES:
        i = names.index(wanted)
        file = f"emoji-{i:05d}.png"
        Image.fromarray(emoji.images[i]).save(folder / file, optimize=True)
        index["emoji"].append({"file": file, "label": wanted, "index": i})
    (folder / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


if __name__ == "__main__":
    print(json.dumps(write_samples(), indent=1))
