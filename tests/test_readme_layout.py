"""The README's layout section names every package of training/ and every module of dfi_core/, and nothing that
is not there: a stale layout (issue 16 found one listing 9 of 35 modules) fails here instead of misleading."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout\n") :]
    return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def test_readme_layout_lists_every_training_package_and_dfi_core_module() -> None:
    block = layout_block()
    listed = set(re.findall(r"^ +([a-z_]+)(?:/|\.py) ", block, flags=re.M))
    packages = {p.name for p in (ROOT / "training").iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in (ROOT / "dfi_core").glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= listed, f"missing from README layout: {sorted((packages | modules) - listed)}"
    assert listed <= packages | modules, f"README layout lists what is not there: {sorted(listed - packages - modules)}"


def test_training_top_level_holds_only_the_package_files() -> None:
    # Every stage lives in its folder (issue 16); a new top-level module would start the flat folder again.
    files = sorted(p.name for p in (ROOT / "training").glob("*.py"))
    assert files == ["__init__.py", "__main__.py"]
