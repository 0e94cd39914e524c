"""A generic folder of images: any size/mode Pillow reads → the model's size, channels and range.

Conversion is `dfi_core.preprocessing.load_image`, the same function the service applies to uploads.
Sub-folders name classes (as torchvision's ImageFolder); images directly in the root get class 0 ("all").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dfi_core.preprocessing import load_image
from training.datasets.base import Dataset, DataSourceMissing

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def load(root: str | Path, size: int, channels: int, split: str = "all") -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DataSourceMissing(f"image folder {root} does not exist (pass --data-dir with a folder of images)")
    paths = list_images(root)
    if not paths:
        raise DataSourceMissing(f"image folder {root} holds no images with extensions {sorted(EXTENSIONS)}")
    class_of = [p.parent.relative_to(root).as_posix() if p.parent != root else "all" for p in paths]
    class_names = sorted(set(class_of))
    images, labels, skipped = [], [], []
    for path, name in zip(paths, class_of, strict=True):
        try:
            with Image.open(path) as image:
                images.append(load_image(image, size, channels))
        except (UnidentifiedImageError, OSError) as error:
            skipped.append(f"{path.name}: {error}")
            continue
        labels.append(class_names.index(name))
    if not images:
        raise DataSourceMissing(f"no readable image in {root}; first errors: {skipped[:3]}")
    if skipped:
        print(f"image folder {root}: skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}")
    return Dataset(
        name=f"folder:{root.name}",
        split=split,
        data=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=class_names,
        source=str(root),
    )
