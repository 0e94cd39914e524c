"""The docs' numbers about the shipped bundles come from the bundles' manifests (issue 22: the README quoted a
bundle two releases old).

A number in the docs is tied to its source by an HTML comment right after it (invisible when rendered):

    17.0<!-- from models/fashion-mnist/manifest.json: metrics.dfi.psnr --> dB

The key is a dotted path into the manifest (list items by index, e.g. `graphs.discriminator_features.output.shape.1`),
`command(train inverter).--steps` (an option of the manifest's recorded `python -m training train inverter` command)
or `size_mib` (manifest.json plus every file it lists, in MiB). The number must equal the manifest value rounded
half-up at the precision shown: "17.0" ↔ 16.9973, "21.59" ↔ 21.585, "3,648" ↔ 3648, "30k" ↔ 30000. Every marker in
the repository's markdown is checked; README.md's intro and models/README.md's bundle table must carry their
headline numbers this way (a bare "15.9 dB" there fails), and README.md's metric-job example must print the
manifest's numbers. Only JSON and file sizes are read: no model is loaded.
"""

from __future__ import annotations

import json
import re
import shlex
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

MARKER = re.compile(
    r"(?<![\d.,])(?P<number>\d[\d,]*(?:\.\d+)?)(?P<k>k?)"
    r"<!-- from models/(?P<bundle>[A-Za-z0-9_.-]+)/manifest\.json: (?P<key>[^<>]+?) -->"
)
ANY_MARKER = re.compile(r"<!-- from models/")
HEADLINE_KEYS = ("metrics.dfi.psnr", "metrics.dfi_opt.psnr")  # README.md's intro, fashion-mnist
TABLE_KEYS = ("metrics.dfi.psnr", "metrics.dfi.ssim", "metrics.dfi_opt.psnr", "metrics.dfi_opt.ssim",
              "metrics.test_images", "size_mib")  # fmt: skip
TABLE_MARKED_COLUMNS = ("DFI PSNR / SSIM", "DFI^opt PSNR / SSIM", "test images", "size")


def load_manifests(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(root.glob("models/*/manifest.json"))}


def marked_files(root: Path = ROOT) -> list[Path]:
    paths = [*root.glob("*.md"), *root.glob("docs/**/*.md"), *root.glob("models/**/*.md")]
    return sorted(p for p in set(paths) if ANY_MARKER.search(p.read_text()))


def bundle_size_mib(bundle_dir: Path, manifest: dict[str, Any]) -> float:
    files = [bundle_dir / "manifest.json", *(bundle_dir / name for name in manifest["files"])]
    return sum(f.stat().st_size for f in files) / 2**20


def manifest_value(manifests: dict[str, dict[str, Any]], bundle: str, key: str, root: Path = ROOT) -> float | int:
    if bundle not in manifests:
        raise KeyError(f"no bundle models/{bundle}")
    manifest = manifests[bundle]
    if key == "size_mib":
        return bundle_size_mib(root / "models" / bundle, manifest)
    command = re.fullmatch(r"command\((?P<name>[^)]+)\)\.(?P<option>--[\w-]+)", key)
    if command:
        prefix = f"python -m training {command['name']} "
        found = [c for c in manifest["training"]["commands"] if c.startswith(prefix)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} recorded commands start with {prefix!r}")
        words = shlex.split(found[0])
        return float(words[words.index(command["option"]) + 1])
    node: Any = manifest
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise KeyError(f"{key} is {node!r}, not a number")
    return node


def as_shown(value: float | int, shown: str, thousands: bool) -> str:
    """The manifest value written like `shown`: same decimals (rounded half-up), thousands commas, a `k` suffix."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    exact = Decimal(repr(value)) / (1000 if thousands else 1)  # repr: the shortest decimal of the float
    rounded = exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return format(rounded, "," if "," in shown else "") + ("k" if thousands else "")


def check_markers(text: str, source: str, manifests: dict[str, dict[str, Any]], root: Path = ROOT) -> list[str]:
    """One message per marked number that differs from its manifest value (or whose marker is broken)."""
    errors = []
    found = list(MARKER.finditer(text))
    for match in found:
        line = text.count("\n", 0, match.start()) + 1
        bundle, key = match["bundle"], match["key"]
        shown = match["number"] + match["k"]
        where = f"{source}:{line}: {shown} (models/{bundle}/manifest.json: {key})"
        try:
            value = manifest_value(manifests, bundle, key, root)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            errors.append(f"{where}: no such manifest value ({error})")
            continue
        expected = as_shown(value, match["number"], thousands=bool(match["k"]))
        if expected != shown:
            errors.append(f"{where}: the manifest says {value!r}, i.e. {expected} at the precision shown")
    if len(found) != len(ANY_MARKER.findall(text)):
        lines = sorted({text.count("\n", 0, m.start()) + 1 for m in ANY_MARKER.finditer(text)}
                       - {text.count("\n", 0, m.start("key")) + 1 for m in found})  # fmt: skip
        errors.append(f"{source}: a `<!-- from models/... -->` marker not right after a number (lines {lines})")
    return errors


def strip_marked(text: str) -> str:
    return MARKER.sub("", text)


def readme_intro(readme: str) -> str:
    """The paragraph under the title."""
    body = readme.split("\n", 1)[1].lstrip("\n")
    return body.split("\n\n", 1)[0]


def check_readme(readme: str, manifests: dict[str, dict[str, Any]], root: Path = ROOT) -> list[str]:
    errors = check_markers(readme, "README.md", manifests, root)
    intro = readme_intro(readme)
    keys = {(m["bundle"], m["key"]) for m in MARKER.finditer(intro)}
    errors += [f"README.md intro: no number marked from models/fashion-mnist/manifest.json: {key}"
               for key in HEADLINE_KEYS if ("fashion-mnist", key) not in keys]  # fmt: skip
    bare = re.findall(r"\d[\d.,]*\s*(?:(?:dB|MiB|MB)\b|%)", strip_marked(intro))
    if bare:
        errors.append(f"README.md intro: numbers without a manifest marker: {bare}")
    # The metric-job example prints the bundle's offline evaluation (a code block: no comments there).
    job = re.findall(r'"psnr": \{"mean": ([\d.]+), "std": ([\d.]+), "n": (\d+)\}, "ssim": \{"mean": ([\d.]+)', readme)
    consistency = re.findall(r'"class_consistency": \{"mean": ([\d.]+)', readme)
    if len(job) != 1 or len(consistency) != 1:
        errors.append(f"README.md: expected one metric-job example, found {len(job)} / {len(consistency)}")
    else:
        metrics = manifests["fashion-mnist"]["metrics"]
        pairs = zip((*job[0], consistency[0]), ("dfi.psnr", "dfi.psnr_std", "test_images", "dfi.ssim",
                                                 "dfi.class_consistency"), strict=True)  # fmt: skip
        for shown, key in pairs:
            value = metrics
            for part in key.split("."):
                value = value[part]
            if as_shown(value, shown, thousands=False) != shown:
                errors.append(f"README.md metric-job example: {shown} but metrics.{key} = {value!r}")
    return errors


def bundle_table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| bundle | GAN | D^f |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return header, rows


def check_models_readme(text: str, manifests: dict[str, dict[str, Any]], root: Path = ROOT) -> list[str]:
    errors = check_markers(text, "models/README.md", manifests, root)
    header, rows = bundle_table(text)
    if {row[0] for row in rows} != set(manifests):
        errors.append(f"models/README.md: table rows {sorted(r[0] for r in rows)}, bundles {sorted(manifests)}")
    for row in rows:
        bundle = row[0]
        marks = [m for cell in row for m in MARKER.finditer(cell)]
        errors += [f"models/README.md row {bundle}: a number marked from models/{m['bundle']}"
                   for m in marks if m["bundle"] != bundle]  # fmt: skip
        keys = {m["key"] for m in marks}
        errors += [f"models/README.md row {bundle}: no number marked {key}" for key in TABLE_KEYS if key not in keys]
        for column in TABLE_MARKED_COLUMNS:
            cell = strip_marked(row[header.index(column)])
            if re.search(r"\d", cell):
                errors.append(f"models/README.md row {bundle}, {column}: a number without a manifest marker: {cell!r}")
    return errors


# --- the shipped docs -------------------------------------------------------------------------------------------


def test_every_marked_number_in_the_docs_equals_its_manifest_value() -> None:
    manifests = load_manifests()
    files = marked_files()
    assert {"README.md", "models/README.md"} <= {str(p.relative_to(ROOT)) for p in files}
    errors = [e for path in files for e in check_markers(path.read_text(), str(path.relative_to(ROOT)), manifests)]
    assert not errors, "\n".join(errors)


def test_readme_intro_quotes_the_shipped_fashion_mnist_bundle() -> None:
    errors = check_readme((ROOT / "README.md").read_text(), load_manifests())
    assert not errors, "\n".join(errors)


def test_models_readme_table_has_every_bundle_and_marks_every_number() -> None:
    errors = check_models_readme((ROOT / "models/README.md").read_text(), load_manifests())
    assert not errors, "\n".join(errors)


# --- the checks fail when a number drifts ----------------------------------------------------------------------


PSNR_MARK = "<!-- from models/fashion-mnist/manifest.json: metrics.dfi.psnr -->"


def test_a_hand_edited_readme_number_fails_naming_file_number_and_manifest_value() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = as_shown(load_manifests()["fashion-mnist"]["metrics"]["dfi"]["psnr"], "0.0", thousands=False)
    assert f"{shown}{PSNR_MARK}" in readme
    scratch = readme.replace(f"{shown}{PSNR_MARK}", f"15.9{PSNR_MARK}", 1)  # the stale number of issue 22
    errors = check_readme(scratch, load_manifests())
    assert len(errors) == 1, errors
    assert "README.md:" in errors[0] and "15.9" in errors[0] and "16.9973" in errors[0], errors[0]


def test_a_reshipped_bundle_fails_the_docs_until_they_are_updated() -> None:
    manifests = load_manifests()
    manifests["emoji"]["metrics"]["dfi_opt"]["ssim"] = 0.6012
    errors = check_models_readme((ROOT / "models/README.md").read_text(), manifests)
    assert any("0.546" in e and "metrics.dfi_opt.ssim" in e and "0.601" in e for e in errors), errors


def test_an_unmarked_or_detached_number_fails() -> None:
    readme = (ROOT / "README.md").read_text()
    intro = readme_intro(readme)
    bare = MARKER.sub(lambda m: m["number"] + m["k"], intro, count=1)  # the first marker dropped
    errors = check_readme(readme.replace(intro, bare, 1), load_manifests())
    assert any("no number marked" in e for e in errors) and any("without a manifest marker" in e for e in errors)
    detached = f"DFI {PSNR_MARK} dB"
    assert check_markers(detached, "x.md", load_manifests()) != []


def test_unmarked_number_in_a_table_metric_column_fails(tmp_path: Path) -> None:
    text = (ROOT / "models/README.md").read_text()
    header, rows = bundle_table(text)
    size_cell = rows[0][header.index("size")]
    scratch = text.replace(size_cell, size_cell + " (51 MB on disk)", 1)
    (tmp_path / "README.md").write_text(scratch)  # a scratch copy; the real file is untouched
    errors = check_models_readme((tmp_path / "README.md").read_text(), load_manifests())
    assert any("size: a number without a manifest marker" in e for e in errors), errors


def test_precision_is_the_one_shown_rounded_half_up() -> None:
    assert as_shown(16.9973, "17.0", thousands=False) == "17.0"
    assert as_shown(16.9973, "17.00", thousands=False) == "17.00"
    assert as_shown(21.585, "21.59", thousands=False) == "21.59"  # float formatting would give 21.58
    assert as_shown(21.585, "21.6", thousands=False) == "21.6"
    assert as_shown(3648, "3,648", thousands=False) == "3,648"
    assert as_shown(30000.0, "30", thousands=True) == "30k"
    assert as_shown(1000, "1000", thousands=False) == "1000"
    assert as_shown(16.9973, "17.1", thousands=False) != "17.1"
