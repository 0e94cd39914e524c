"""Emoji faces and people (64×64 RGB on white): the stand-in for CelebA, with attributes to edit.

Source: the npm packages `emoji-datasource-twitter` (graphics CC-BY 4.0) and `emoji-datasource-google`
(Apache 2.0), version 16.0.0. `fetch` runs `npm pack` into `<cache>/emoji/`; `prepare` reads the tarballs
in place (no extraction), decodes every 64×64 RGBA PNG of every entry and skin variation that the pack has
an image for (`has_img_<pack>`), composites it on white with `dfi_core.preprocessing.load_image` (the same
conversion the service applies to posted images) and writes one compressed `<cache>/emoji/emoji-<size>.npz`
holding the images and one array per label. Each pack's labels come from the emoji.json of its own tarball.
Apple and Facebook packs are deliberately not supported: their images are not licensed for this use.

Labels per image (all parsed from emoji.json):
    pack         'twitter' | 'google'
    short_name   e.g. 'red_haired_man' (of the base emoji; skin variants share it)
    unified      code points of this very image, e.g. '1F468-1F3FB-200D-1F9B0' for a skin variant
    category     e.g. 'People & Body', 'Smileys & Emotion', 'Flags' ('Component' is kept)
    subcategory  e.g. 'person', 'person-role', 'family'
    gender       only People & Body emoji get one; the words of `name` and `short_name` are split on
                 anything that is not a letter and compared whole (so 'female' is not 'male' and the
                 flag 'Isle of Man' or 'LADY BEETLE', outside People & Body, stay 'none'):
                   'man'    male words (man, men, boy, male, father, king, prince, ...) and no female word
                   'woman'  female words (woman, women, girl, female, lady, mother, queen, princess, ...)
                            and no male word
                   'person' both kinds of words (couples, families with a man and a woman), or none of them
                            in a person-type subcategory (person, person-role, person-gesture, family, ...)
                   'none'   everything else: hands, body parts, silhouettes, faces, objects, flags
    skin_tone    0 for the default (yellow) image, 1..5 for the modifiers 1F3FB..1F3FF; two-person variants
                 (keys like '1F3FB-1F3FC') take the first person's tone
    hair         People & Body only: 'red' | 'curly' | 'white' | 'blond' when that word is directly followed
                 by 'hair'/'haired' (so 'MAN WITH WHITE CANE' is not white hair), 'bald' for the word bald,
                 'none' otherwise
    group        the base emoji's `unified`: all its skin variants, in both packs, share one group

Split: `split_of(group)` is 'test' when int(sha1(group).hexdigest(), 16) % 10 == 0, else 'train' (about 10 %
test). It depends on the group only, so every variant of one emoji — both packs, all skin tones — lands in the
same split and near-duplicates never leak from train into test. It needs no seed and no stored list, and an
emoji keeps its split when packs or new emoji are added.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from dfi_core.datasets import emoji_split_of, load_emoji
from training.datasets.base import Dataset, DataSourceMissing, default_cache_dir

PACKS = ("twitter", "google")
VERSION = "16.0.0"
SPLITS = ("train", "test", "all")
FETCH_COMMAND = "python -m training data fetch emoji"
LABEL_KEYS = (
    "pack", "short_name", "unified", "category", "subcategory", "gender", "skin_tone", "hair", "group",
)  # fmt: skip

MALE_WORDS = frozenset(
    ("man", "men", "boy", "boys", "male", "gentleman", "gentlemen", "father", "king", "prince", "merman",
     "guardsman", "husband", "son")
)  # fmt: skip
FEMALE_WORDS = frozenset(
    ("woman", "women", "girl", "girls", "female", "lady", "ladies", "mother", "queen", "princess", "mermaid",
     "bride", "wife", "daughter", "mrs")
)  # fmt: skip
PERSON_SUBCATEGORIES = frozenset(
    ("person", "person-gesture", "person-role", "person-fantasy", "person-activity", "person-sport",
     "person-resting", "family")
)  # fmt: skip
HAIR_COLOURS = ("red", "curly", "white", "blond")
PEOPLE = "People & Body"
FIRST_TONE = 0x1F3FB  # EMOJI MODIFIER FITZPATRICK TYPE-1-2 → skin_tone 1


def cache_folder(cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "emoji"


def tarball_path(pack: str, cache_dir: Path | None = None) -> Path:
    return cache_folder(cache_dir) / f"emoji-datasource-{pack}-{VERSION}.tgz"


def npz_path(cache_dir: Path | None = None, size: int = 64) -> Path:
    return cache_folder(cache_dir) / f"emoji-{size}.npz"


def check_packs(packs: Iterable[str]) -> tuple[str, ...]:
    packs = tuple(packs)
    unknown = [p for p in packs if p not in PACKS]
    if unknown or not packs:
        raise ValueError(f"emoji packs must be a non-empty subset of {PACKS}, got {packs!r}")
    return packs


def fetch(cache_dir: Path | None = None, packs: Iterable[str] = PACKS) -> list[Path]:
    """`npm pack emoji-datasource-<pack>@16.0.0` into `<cache>/emoji/`; packs already there are skipped."""
    packs = check_packs(packs)
    folder = cache_folder(cache_dir)
    wanted = [p for p in packs if not tarball_path(p, cache_dir).is_file()]
    npm = shutil.which("npm")
    if wanted and npm is None:
        raise DataSourceMissing(
            "the emoji data set is fetched with npm, which is not on PATH; install Node.js and npm "
            "(Debian/Ubuntu: `apt-get install npm`, or https://nodejs.org), then run "
            f"`{FETCH_COMMAND}` again"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for pack in packs:
        target = tarball_path(pack, cache_dir)
        if pack not in wanted:
            print(f"emoji: {target.name} already in {folder}")
            continue
        print(f"emoji: npm pack emoji-datasource-{pack}@{VERSION} → {folder}")
        result = subprocess.run(
            [npm, "pack", f"emoji-datasource-{pack}@{VERSION}"], cwd=folder, capture_output=True, text=True
        )
        if result.returncode != 0 or not target.is_file():
            raise DataSourceMissing(
                f"`npm pack emoji-datasource-{pack}@{VERSION}` failed (exit {result.returncode}) in "
                f"{folder}: {(result.stderr or result.stdout).strip()[-500:]}"
            )
    return [tarball_path(p, cache_dir) for p in packs]


def words(*texts: str) -> list[str]:
    """Lower-case letter runs: 'blond-haired-man' → ['blond', 'haired', 'man']."""
    return [w for text in texts for w in re.findall(r"[a-z]+", text.lower())]


def gender_of(entry: dict) -> str:
    if entry.get("category") != PEOPLE:
        return "none"
    tokens = set(words(entry.get("name") or "", entry.get("short_name") or ""))
    male, female = bool(tokens & MALE_WORDS), bool(tokens & FEMALE_WORDS)
    if male != female:
        return "man" if male else "woman"
    if male or entry.get("subcategory") in PERSON_SUBCATEGORIES:
        return "person"
    return "none"


def hair_of(entry: dict) -> str:
    if entry.get("category") != PEOPLE:
        return "none"
    for text in (entry.get("short_name") or "", entry.get("name") or ""):
        tokens = words(text)
        if "bald" in tokens:
            return "bald"
        for word, following in zip(tokens, tokens[1:], strict=False):
            if word in HAIR_COLOURS and following in ("hair", "haired"):
                return word
    return "none"


def tone_of(variation_key: str | None) -> int:
    """'1F3FB' → 1 ... '1F3FF' → 5; '1F3FB-1F3FC' (two people) → the first tone; None (base image) → 0."""
    if not variation_key:
        return 0
    tone = int(variation_key.split("-")[0], 16) - FIRST_TONE + 1
    if not 1 <= tone <= 5:
        raise ValueError(f"unexpected skin variation key {variation_key!r}")
    return tone


split_of = emoji_split_of  # one definition, shared with the service's metric jobs


def image_records(entries: list[dict], pack: str) -> Iterator[tuple[str, dict]]:
    """(PNG file name, labels) for the base image and each skin variation that `pack` draws."""
    flag = f"has_img_{pack}"
    for entry in entries:
        shared = {
            "pack": pack,
            "short_name": entry["short_name"],
            "category": entry["category"],
            "subcategory": entry["subcategory"],
            "gender": gender_of(entry),
            "hair": hair_of(entry),
            "group": entry["unified"],
        }
        variants = [(None, entry), *(entry.get("skin_variations") or {}).items()]
        for key, variant in variants:
            if variant.get(flag):
                yield variant["image"], {**shared, "unified": variant["unified"], "skin_tone": tone_of(key)}


def read_tarball(path: Path, pack: str) -> tuple[list[dict], dict[str, bytes]]:
    """emoji.json and the bytes of every 64 px PNG, in one sequential pass over the gzip stream."""
    prefix = f"package/img/{pack}/64/"
    entries: list[dict] | None = None
    pngs: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            if not member.isfile():
                continue
            if member.name == "package/emoji.json":
                entries = json.load(archive.extractfile(member))
            elif member.name.startswith(prefix) and member.name.endswith(".png"):
                pngs[member.name[len(prefix) :]] = archive.extractfile(member).read()
    if entries is None:
        raise ValueError(f"{path}: no package/emoji.json; not an emoji-datasource tarball")
    return entries, pngs


def decode_pack(path: Path, pack: str, size: int) -> tuple[list[np.ndarray], list[dict]]:
    from tqdm import tqdm

    from dfi_core.preprocessing import load_image

    entries, pngs = read_tarball(path, pack)
    records = list(image_records(entries, pack))
    missing = [name for name, _ in records if name not in pngs]
    if missing:
        raise ValueError(f"{path}: {len(missing)} images listed in emoji.json are absent, e.g. {missing[:3]}")
    images = [
        load_image(io.BytesIO(pngs[name]), size, 3)
        for name, _ in tqdm(records, desc=f"emoji {pack}", unit="img", mininterval=1.0)
    ]
    return images, [labels for _, labels in records]


def prepare(cache_dir: Path | None = None, packs: Iterable[str] = PACKS, size: int = 64) -> Path:
    """Decode the packs' tarballs into `<cache>/emoji/emoji-<size>.npz` (images + one array per label)."""
    packs = check_packs(packs)
    tarballs = [tarball_path(p, cache_dir) for p in packs]
    absent = [str(t) for t in tarballs if not t.is_file()]
    if absent:
        raise DataSourceMissing(f"emoji tarballs not found: {', '.join(absent)}; run `{FETCH_COMMAND}` first")
    images: list[np.ndarray] = []
    labels: list[dict] = []
    for pack, tarball in zip(packs, tarballs, strict=True):
        pack_images, pack_labels = decode_pack(tarball, pack, size)
        images += pack_images
        labels += pack_labels
    arrays = {key: np.array([row[key] for row in labels]) for key in LABEL_KEYS}
    arrays["skin_tone"] = arrays["skin_tone"].astype(np.int8)
    target = npz_path(cache_dir, size)
    partial = target.with_name(f"{target.stem}.partial.npz")
    np.savez_compressed(partial, images=np.stack(images), packs=np.array(packs), **arrays)
    partial.replace(target)  # atomic: a reader never sees a half-written file
    print(f"emoji: {len(images)} images ({', '.join(packs)}) → {target}")
    return target


def stored_packs(path: Path) -> list[str]:
    with np.load(path, allow_pickle=False) as stored:  # reads only this array of the npz
        return stored["packs"].tolist()


def load(split: str = "train", cache_dir: Path | None = None, packs: Iterable[str] = PACKS, size: int = 64) -> Dataset:
    """The emoji images of `split` ('train', 'test' or 'all') and `packs`; prepares the npz on first use.
    Reading and the split rule live in `dfi_core.datasets.load_emoji` (shared with the service's jobs)."""
    if split not in SPLITS:
        raise ValueError(f"emoji split must be one of {', '.join(SPLITS)}; got {split!r}")
    packs = check_packs(packs)
    path = npz_path(cache_dir, size)
    have = stored_packs(path) if path.is_file() else []
    if not set(packs) <= set(have):
        prepare(cache_dir, [p for p in PACKS if p in packs or p in have], size)
    data = load_emoji(split, cache_dir, size, attribute_keys=LABEL_KEYS)
    keep = np.isin(np.array(data.attributes["pack"]), packs)
    return Dataset(
        name="emoji",
        split=split,
        data=data.images[keep],
        labels=data.labels[keep],
        class_names=data.class_names,
        attributes={key: np.asarray(values)[keep].tolist() for key, values in data.attributes.items()},
        source=data.source,
    )
