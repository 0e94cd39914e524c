"""Editing directions of any bundle from a folder of labelled images (issue 17: eq. 9 and SVM for a GAN of your own).

The zoo's directions come from the labels of its two data sets (`training.editing.directions`). A bundle made from
a user's GAN has no such recipe, so its labels come from a folder, one sub-folder per label, as torchvision's
ImageFolder lays them out:

    ROOT/<label>/*.png                 every image of a label folder has that label
    ROOT/<label>/<group>/.../*.png     optional: deeper folders name a group (e.g. ROOT/smiling/woman/)

IJCV eq. 9: a direction is the mean inferred latent ẑ of the images with an attribute minus the mean of those
without it, computed per group and averaged over the groups, so that what differs between groups cancels. Here the
groups are the sub-folders below the label folders ("" where there are none). Directions:

- `<label>`: the images of that label against the images of every other label (one per label, as the emoji
  bundle's `bald` is "with" against "without");
- `<source>_to_<target>` for each pair asked for (`pairs`): the target label against the source label, as the
  Fashion-MNIST bundle's class-to-class vectors.

Latents come from the bundle's own invert.onnx (`bundle_latents`), exactly what the service infers for a user's
image; images are read and resized as the service reads uploads (`dfi_core.preprocessing.load_image`). The maths
and the bundle write (`training.export.extras.store_directions`: eq. 9, InterFaceGAN's SVM, PCA, SeFa; the
manifest's sha256 of every direction file) are the zoo's; `python -m training export folder-directions` joins the
two. SeFa needs no labels: for a bundle without a zoo G, its first layer on z is read from generator.onnx
(`training.editing.onnx_first_layer`), and a G that does not start with a Linear is refused with the op it starts
with (before the bundle is touched).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dfi_core.bundle import DIRECTION_NAME_PATTERN, Bundle
from dfi_core.preprocessing import load_image
from training.datasets.image_folder import list_images
from training.editing.directions import (
    DirectionSpec,
    bundle_latents,
    generator_first_layer,
    grouped_direction,
    spec_sides,
)

NAME_LENGTH = 60  # a direction name is ≤ 64 characters (DIRECTION_NAME_PATTERN), and "svm_" is prefixed to one


@dataclass
class LabelledImages:
    """The images of a labelled folder at a bundle's size: [N, H, W, C] uint8, with a label and a group each."""

    root: Path
    images: np.ndarray
    labels: list[str]
    groups: list[str]
    skipped: list[str] = field(default_factory=list)  # "path: why" of every file that was not read

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One row per image, as `DirectionSpec`s read them."""
        return [{"label": label, "group": group} for label, group in zip(self.labels, self.groups, strict=True)]

    def counts(self) -> dict[str, int]:
        return {label: self.labels.count(label) for label in sorted(set(self.labels))}


def load_labelled_folder(root: str | Path, channels: int, size: int) -> LabelledImages:
    """Every image under ROOT/<label>/ (recursively), read as the service reads an upload (square `size`,
    `channels`). Images directly in ROOT, and files Pillow cannot read, are skipped with their reason."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--images: {root} is not a folder (give ROOT with one sub-folder of images per label)")
    images, labels, groups, skipped = [], [], [], []
    for path in list_images(root):
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            skipped.append(f"{path}: directly in {root}, not in a label folder")
            continue
        try:
            with Image.open(path) as image:
                images.append(load_image(image, size, channels))
        except (UnidentifiedImageError, OSError) as error:
            skipped.append(f"{path}: {error}")
            continue
        labels.append(parts[0])
        groups.append("/".join(parts[1:-1]))
    if len(set(labels)) < 2:
        found = f"only {sorted(set(labels))}" if labels else "no readable image in a label folder"
        raise ValueError(f"--images {root}: directions need images of at least two labels (ROOT/<label>/*.png), "
                         f"found {found}" + (f"; skipped e.g. {skipped[0]}" if skipped else ""))  # fmt: skip
    return LabelledImages(root, np.stack(images), labels, groups, skipped)


def direction_name(label: str) -> str:
    """A label as a direction name: lower case, runs of other characters as "_", at most NAME_LENGTH long."""
    name = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:NAME_LENGTH].strip("_")
    if not re.match(DIRECTION_NAME_PATTERN, name):
        raise ValueError(f"label folder {label!r} gives no direction name (it needs a letter or digit)")
    return name


def folder_specs(labels: list[str], pairs: list[tuple[str, str]] | None = None) -> list[DirectionSpec]:
    """One direction per label (that label against all others) and one per (source, target) pair (target against
    source), grouped by sub-folder (eq. 9). Unknown labels in `pairs`, and two labels that give one name, are
    errors naming them."""
    known = sorted(set(labels))
    unknown = sorted({label for pair in pairs or [] for label in pair} - set(known))
    if unknown:
        raise ValueError(f"--pairs names label(s) {unknown} that have no folder; the labels: {known}")
    group = lambda row: row["group"]  # noqa: E731
    made: list[tuple[DirectionSpec, str]] = []  # (spec, what it was made from: a label or a pair)
    for label in known:
        others = ", ".join(other for other in known if other != label)
        made.append((DirectionSpec(direction_name(label), f"label folder '{label}' against the other labels "
                                   f"({others}): mean ẑ difference, averaged over the sub-folder groups (eq. 9)",
                                   lambda r, a=label: r["label"] == a, lambda r, a=label: r["label"] != a, group),
                     f"label {label!r}"))  # fmt: skip
    for source, target in pairs or []:
        if source == target:
            raise ValueError(f"--pairs {source}:{target}: a direction needs two different labels")
        name = f"{direction_name(source)[:29]}_to_{direction_name(target)[:27]}"
        made.append((DirectionSpec(name, f"label folder '{source}' → '{target}': mean ẑ difference, averaged over "
                                   "the sub-folder groups (eq. 9)", lambda r, t=target: r["label"] == t,
                                   lambda r, s=source: r["label"] == s, group),
                     f"pair {source}:{target}"))  # fmt: skip
    origins: dict[str, str] = {}
    for spec, origin in made:
        if spec.name in origins:
            raise ValueError(f"{origins[spec.name]} and {origin} both give the direction name {spec.name!r}; rename "
                             "a folder or drop the pair")  # fmt: skip
        origins[spec.name] = origin
    return [spec for spec, _ in made]


def check_specs(bundle: Bundle, rows: list[dict[str, Any]], specs: list[DirectionSpec], kinds: tuple[str, ...]) -> None:
    """Every failure the store could meet, raised before it touches the bundle: a direction with no group that has
    images on both sides (eq. 9), an SVM side with no image, SeFa on a G whose first layer on z is no Linear."""
    latents = np.zeros((len(rows), 1), dtype=np.float32)  # only which rows fall on which side matters here
    for spec in specs:
        grouped_direction(latents, rows, spec)
        with_, without = spec_sides(rows, spec)
        if "svm" in kinds and (len(with_) == 0 or len(without) == 0):
            raise ValueError(f"direction {spec.name}: the SVM needs images on both sides")
    if "sefa" in kinds:
        generator_first_layer(bundle)


def folder_latents(bundle: Bundle, data: LabelledImages, threads: int | None = None) -> np.ndarray:
    """ẑ [N, |z|] of the folder's images through the bundle's invert.onnx."""
    return bundle_latents(bundle, data.images, threads=threads)
