"""Reading the evaluation data sets without torch: the service's metric jobs and the training package share it.

Only the two real data sets of the project (../shared/DATA.md), as prepared on disk:
    fashion-mnist   the IDX files of the Debian package `dataset-fashion-mnist` ($FASHION_MNIST_DIR overrides)
    emoji           the npz that `python -m training data prepare emoji` writes ($DFI_CACHE_DIR/emoji/emoji-64.npz)
Images come back as [N, H, W, C] uint8 [0, 255] with int64 labels [N] and the class names.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian), or point --data-dir / "
    "$FASHION_MNIST_DIR at a folder with the four *-ubyte.gz files of the data set's release"
)
EMOJI_HINT = "run `python -m training data prepare emoji` (fetches the npm packs, decodes them once)"
SERVED_DATASETS = ("fashion-mnist", "emoji")  # the data sets a bundle can name (their test splits are read here)


class DataSourceMissing(FileNotFoundError):
    """A data set's source files are absent; the message names the command that installs them."""


@dataclass
class ImageSplit:
    name: str
    split: str
    images: np.ndarray  # [N, H, W, C] uint8
    labels: np.ndarray  # [N] int64
    class_names: list[str]
    attributes: dict[str, list] = field(default_factory=dict)
    source: str = ""


def default_cache_dir() -> Path:
    """Where fetched/prepared data sets live: $DFI_CACHE_DIR, else ~/.cache/dfi (never inside the repo)."""
    return Path(os.environ.get("DFI_CACHE_DIR", Path.home() / ".cache" / "dfi"))


def fashion_mnist_dir(data_dir: str | Path | None = None) -> Path:
    return Path(data_dir or os.environ.get("FASHION_MNIST_DIR") or FASHION_MNIST_DEBIAN_DIR)


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (gzip or plain). Written by hand: the format is a 4-byte magic + big-endian dims,
    and the only library readers (torchvision, idx2numpy) would add a dependency for ten lines."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    expected = int(np.prod(dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != expected:
        raise ValueError(f"{path}: header says {dims} ({expected} bytes) but {body.size} bytes follow")
    return body.reshape(dims)


def load_fashion_mnist(split: str = "test", data_dir: str | Path | None = None) -> ImageSplit:
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST split must be one of {sorted(FASHION_MNIST_FILES)}, got {split!r}")
    folder = fashion_mnist_dir(data_dir)
    image_file, label_file = (folder / name for name in FASHION_MNIST_FILES[split])
    missing = [str(p) for p in (image_file, label_file) if not p.is_file()]
    if missing:
        raise DataSourceMissing(f"Fashion-MNIST files not found: {', '.join(missing)}; {FASHION_MNIST_HINT}")
    images = read_idx(image_file)
    labels = read_idx(label_file).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{folder}: unexpected shapes images {images.shape}, labels {labels.shape}")
    return ImageSplit("fashion-mnist", split, images[:, :, :, None].copy(), labels, list(FASHION_MNIST_CLASSES),
                      source=str(folder))  # fmt: skip


def emoji_split_of(group: str) -> str:
    """'test' for about 10 % of emoji groups (sha1 of the group's code points), else 'train'. Splitting by the
    base emoji keeps its skin-tone variants and the other pack's drawing of it on the same side."""
    return "test" if int(hashlib.sha1(group.encode()).hexdigest(), 16) % 10 == 0 else "train"


def emoji_npz_path(cache_dir: Path | None = None, size: int = 64) -> Path:
    return Path(cache_dir or default_cache_dir()) / "emoji" / f"emoji-{size}.npz"


def load_emoji(split: str = "test", cache_dir: Path | None = None, size: int = 64,
               attribute_keys: tuple[str, ...] = ()) -> ImageSplit:  # fmt: skip
    """The prepared emoji images of `split` ('train', 'test' or 'all'), labelled by category."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"emoji split must be one of train, test, all; got {split!r}")
    path = emoji_npz_path(cache_dir, size)
    if not path.is_file():
        raise DataSourceMissing(f"emoji data not prepared: {path} is missing; {EMOJI_HINT}")
    with np.load(path, allow_pickle=False) as stored:
        values = {key: stored[key] for key in stored.files}
    keep = np.ones(len(values["images"]), dtype=bool)
    if split != "all":
        keep = np.array([emoji_split_of(g) == split for g in values["group"].tolist()], dtype=bool)
    class_names = sorted(set(values["category"].tolist()))
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[c] for c in values["category"][keep].tolist()], dtype=np.int64)
    attributes = {key: values[key][keep].tolist() for key in attribute_keys}
    return ImageSplit("emoji", split, values["images"][keep], labels, class_names, attributes, str(path))


def load_split(name: str, split: str = "test") -> ImageSplit:
    """One split of a project data set by name (the service's metric jobs call this)."""
    if name == "fashion-mnist":
        return load_fashion_mnist(split)
    if name == "emoji":
        return load_emoji(split)
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(SERVED_DATASETS)}")
