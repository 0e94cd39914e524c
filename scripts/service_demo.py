"""Call a running service (bash scripts/run.sh) and draw docs/service/service_demo.png: a Fashion-MNIST test shirt,
its DFI and DFI^opt reconstructions, the shirt_to_dress edit, and an interpolation between two inverted shirts.

    python scripts/service_demo.py [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import base64
import io
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

DOCS = Path(__file__).resolve().parents[1] / "docs" / "service"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    http = httpx.Client(base_url=args.url, timeout=120)
    shirts = [base64.b64encode((DOCS / name).read_bytes()).decode() for name in ("shirt.png", "shirt2.png")]

    def png(text: str) -> Image.Image:
        return Image.open(io.BytesIO(base64.b64decode(text))).convert("L")

    dfi = http.post("/invert", json={"images": shirts[:1]}).json()["results"][0]
    opt = http.post("/invert", json={"images": shirts[:1], "refine_steps": 50}).json()["results"][0]
    edit = http.post("/edit", json={"latents": [dfi["latent"]],
                                    "directions": [{"name": "shirt_to_dress", "strength": 1.0}]}).json()  # fmt: skip
    walk = http.post("/edit", json={"images": shirts, "interpolate_steps": 8}).json()["results"]
    top = [
        (png(shirts[0]), "input"),
        (png(dfi["reconstruction_png"]), "DFI"),
        (png(opt["reconstruction_png"]), "DFI^opt 50"),
        (png(edit["results"][0]["image_png"]), "+shirt_to_dress"),
    ]
    scale, pad = 4, 16
    side = 28 * scale
    canvas = Image.new("L", (8 * (side + 4) + 4, 2 * (side + pad) + 8), 255)
    draw = ImageDraw.Draw(canvas)
    for i, (image, label) in enumerate(top):
        canvas.paste(image.resize((side, side), Image.NEAREST), (4 + i * (side + 4), pad))
        draw.text((4 + i * (side + 4), 2), label, fill=0)
    draw.text(
        (4, side + pad + 4), "interpolation (POST /edit, interpolate_steps=8) between two inverted shirts", fill=0
    )
    for i, result in enumerate(walk):
        canvas.paste(
            png(result["image_png"]).resize((side, side), Image.NEAREST), (4 + i * (side + 4), side + 2 * pad + 4)
        )
    canvas.save(DOCS / "service_demo.png")
    print(DOCS / "service_demo.png")


if __name__ == "__main__":
    main()
