"""The emoji data set, on the real npm tarballs in the data cache (skipped where they were never fetched)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from training.datasets import emoji
from training.datasets.base import Dataset, DataSourceMissing


def have_source() -> bool:
    return emoji.npz_path().is_file() or all(emoji.tarball_path(p).is_file() for p in emoji.PACKS)


def load_or_skip(split: str) -> Dataset:
    if not have_source():
        missing = "emoji tarballs not fetched; run `python -m training data fetch emoji`"
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI fetches them first: a skip there would hide a broken set-up
        pytest.skip(missing)
    return emoji.load(split)


@pytest.fixture(scope="module")
def full() -> Dataset:
    return load_or_skip("all")


@pytest.fixture(scope="module")
def train_set() -> Dataset:
    return load_or_skip("train")


@pytest.fixture(scope="module")
def test_set() -> Dataset:
    return load_or_skip("test")


def find(data: Dataset, **wanted: object) -> list[int]:
    attrs = data.attributes
    return [i for i in range(len(data)) if all(attrs[k][i] == v for k, v in wanted.items())]


def test_images_are_64px_rgb_uint8_on_white(train_set: Dataset, test_set: Dataset) -> None:
    for data in (train_set, test_set):
        assert data.data.dtype == np.uint8
        assert data.data.shape[1:] == (64, 64, 3)
        assert data.shape == (3, 64, 64)
        assert data.data.min() == 0 and data.data.max() == 255
        white_corner = (data.data[:, 0, 0] == 255).all(axis=1)
        assert white_corner.mean() > 0.9, "transparent corners must be composited on white"
        assert len(data.labels) == len(data) and data.labels.dtype == np.int64
        assert all(len(values) == len(data) for values in data.attributes.values())
    batch = train_set.batch(np.arange(4))
    assert batch.shape == (4, 3, 64, 64) and float(batch.min()) >= -1.0 and float(batch.max()) <= 1.0


def test_splits_partition_the_data_by_group(full: Dataset, train_set: Dataset, test_set: Dataset) -> None:
    assert len(train_set) + len(test_set) == len(full)
    assert 0.05 <= len(test_set) / len(full) <= 0.15
    assert not set(train_set.attributes["group"]) & set(test_set.attributes["group"])
    # Every image of a group (both packs, all skin tones) is in the split its group is in.
    per_group = Counter(full.attributes["group"])
    split_counts = Counter(train_set.attributes["group"]) + Counter(test_set.attributes["group"])
    assert split_counts == per_group


def test_split_of_depends_on_the_group_only(full: Dataset) -> None:
    # Regression values of the documented rule (sha1 of the group % 10 == 0 → test).
    assert emoji.split_of("0033-FE0F-20E3") == "test"  # keycap 3
    assert emoji.split_of("1F468-200D-1F9B0") == "train"  # man: red hair
    assert all(emoji.split_of(g) == emoji.split_of(str(g)) for g in set(full.attributes["group"]))
    assert {emoji.split_of(g) for g in full.attributes["group"]} == {"train", "test"}


def test_loading_twice_gives_identical_data(test_set: Dataset) -> None:
    again = emoji.load("test")
    np.testing.assert_array_equal(again.data, test_set.data)
    np.testing.assert_array_equal(again.labels, test_set.labels)
    assert again.attributes == test_set.attributes
    assert again.class_names == test_set.class_names


def test_class_names_are_the_categories(full: Dataset, train_set: Dataset) -> None:
    assert full.class_names == sorted(set(full.attributes["category"]))
    assert train_set.class_names == full.class_names
    assert {"People & Body", "Smileys & Emotion", "Flags"} <= set(full.class_names)
    names = [full.class_names[i] for i in full.labels]
    assert names == full.attributes["category"]


def test_both_packs_and_pack_filter(full: Dataset) -> None:
    packs = Counter(full.attributes["pack"])
    assert set(packs) == {"twitter", "google"} and min(packs.values()) > 3000
    google = emoji.load("all", packs=("google",))
    assert set(google.attributes["pack"]) == {"google"} and len(google) == packs["google"]
    assert google.class_names == full.class_names


def test_red_haired_man(full: Dataset) -> None:
    base = find(full, short_name="red_haired_man", skin_tone=0)
    assert len(base) == 2  # one per pack
    for i in base:
        assert full.attributes["gender"][i] == "man"
        assert full.attributes["hair"][i] == "red"
        assert full.attributes["group"][i] == "1F468-200D-1F9B0"
        assert full.attributes["category"][i] == "People & Body"


def test_skin_variation_gets_its_tone(full: Dataset) -> None:
    medium = find(full, unified="1F468-1F3FD-200D-1F9B0")  # man: medium skin tone, red hair
    assert len(medium) == 2
    for i in medium:
        assert full.attributes["skin_tone"][i] == 3
        assert full.attributes["group"][i] == "1F468-200D-1F9B0"
        assert full.attributes["hair"][i] == "red" and full.attributes["gender"][i] == "man"
    tones = find(full, short_name="red_haired_man", pack="twitter")
    assert sorted(full.attributes["skin_tone"][i] for i in tones) == [0, 1, 2, 3, 4, 5]


def test_bald_woman(full: Dataset) -> None:
    rows = find(full, short_name="bald_woman")
    assert len(rows) == 12  # 2 packs × (default + 5 tones)
    assert {full.attributes["gender"][i] for i in rows} == {"woman"}
    assert {full.attributes["hair"][i] for i in rows} == {"bald"}


def test_non_person_emoji_has_no_person_labels(full: Dataset) -> None:
    for short_name in ("jp", "flag-im", "ladybug", "female_sign", "grinning"):
        rows = find(full, short_name=short_name)
        assert rows, short_name
        for i in rows:
            assert full.attributes["gender"][i] == "none", short_name
            assert full.attributes["skin_tone"][i] == 0, short_name
            assert full.attributes["hair"][i] == "none", short_name


def test_label_counts(full: Dataset) -> None:
    hair = Counter(full.attributes["hair"])
    assert all(hair[h] > 0 for h in ("red", "curly", "white", "bald", "blond", "none"))
    assert set(hair) == {"red", "curly", "white", "bald", "blond", "none"}
    gender = Counter(full.attributes["gender"])
    assert set(gender) == {"man", "woman", "person", "none"} and min(gender.values()) > 100
    tones = Counter(full.attributes["skin_tone"])
    assert set(tones) == {0, 1, 2, 3, 4, 5} and len({tones[t] for t in range(1, 6)}) == 1


def entry(name: str, short_name: str, subcategory: str = "person", category: str = "People & Body") -> dict:
    return {"name": name, "short_name": short_name, "category": category, "subcategory": subcategory}


def test_gender_and_hair_rules() -> None:
    bald_woman = entry("WOMAN: BALD", "woman-bald")
    assert (emoji.gender_of(bald_woman), emoji.hair_of(bald_woman)) == ("woman", "bald")
    blond_man = entry("MAN: BLOND HAIR", "blond-haired-man")
    assert (emoji.gender_of(blond_man), emoji.hair_of(blond_man)) == ("man", "blond")
    assert emoji.gender_of(entry("WOMAN FARMER", "female-farmer", "person-role")) == "woman"
    assert emoji.gender_of(entry("ADULT", "adult")) == "person"
    assert emoji.gender_of(entry("FAMILY: MAN, WOMAN, BOY", "man-woman-boy", "family")) == "person"
    assert emoji.hair_of(entry("MAN WITH WHITE CANE", "man_with_probing_cane", "person-activity")) == "none"
    assert emoji.gender_of(entry("CLAPPING HANDS SIGN", "clap", "hands")) == "none"
    assert emoji.gender_of(entry("Isle of Man Flag", "flag-im", "country-flag", "Flags")) == "none"


def test_skin_tone_rule() -> None:
    keys = (None, "1F3FB", "1F3FF", "1F3FB-1F3FC", "1F3FE-1F3FB")
    assert [emoji.tone_of(k) for k in keys] == [0, 1, 5, 1, 4]
    with pytest.raises(ValueError):
        emoji.tone_of("1F600")


def test_missing_tarball_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(DataSourceMissing, match="python -m training data fetch emoji"):
        emoji.prepare(cache_dir=tmp_path)
    with pytest.raises(DataSourceMissing, match="python -m training data fetch emoji"):
        emoji.load("train", cache_dir=tmp_path)


def test_fetch_without_npm_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DataSourceMissing, match="apt-get install npm"):
        emoji.fetch(cache_dir=tmp_path)


def test_fetch_skips_tarballs_already_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not all(emoji.tarball_path(p).is_file() for p in emoji.PACKS):
        (pytest.fail if os.environ.get("CI") else pytest.skip)("tarballs not in the cache")
    (tmp_path / "emoji").mkdir()
    for pack in emoji.PACKS:
        (tmp_path / "emoji" / emoji.tarball_path(pack).name).symlink_to(emoji.tarball_path(pack))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # npm would be needed if it tried to fetch
    assert emoji.fetch(cache_dir=tmp_path) == [emoji.tarball_path(p, tmp_path) for p in emoji.PACKS]


@pytest.mark.parametrize("split", ["validation", "TRAIN", ""])
def test_bad_split_is_rejected(split: str) -> None:
    with pytest.raises(ValueError, match="train, test, all"):
        emoji.load(split)
