"""Every `python -m training ...` command recorded in the shipped manifests, the docs, the scripts and the
package's own docstrings still parses: each names a real command of the table (training/cli/app.py), every
option it passes exists there, and no stray argument is left over. Parsing stops before type conversion, so
paths that exist only on the machine that trained (runs/...) do not matter; what is checked is the CLI's shape,
which the layout change must not break (issue 16: "every command string recorded ... keeps working")."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer.main

from training.cli.app import app

ROOT = Path(__file__).resolve().parents[3]
# A command runs to the end of the line (after joining `\` continuations) or to the first shell/markdown break.
COMMAND = re.compile(r"python3? -m training((?:[ \t]+[^\s`\"'|;&<>#()\[\]]+)*)")
PLACEHOLDERS = ("...", "…")  # "--gan ..." in prose: any value


def recorded_commands() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for manifest in sorted(ROOT.glob("models/*/manifest.json")):
        for command in json.loads(manifest.read_text())["training"]["commands"]:
            found += [(f"{manifest.relative_to(ROOT)}", m.group(0)) for m in COMMAND.finditer(command)]
    sources = [*ROOT.glob("*.md"), *ROOT.glob("docs/**/*.md"), *ROOT.glob("models/**/*.md"), *ROOT.glob("scripts/*"),
               *ROOT.glob("training/**/*.py"), *ROOT.glob("benchmarks/*.md"), *ROOT.glob("docker/*.md")]  # fmt: skip
    for path in sorted(set(sources)):
        if not path.is_file():
            continue
        text = re.sub(r"\\\n\s*", " ", path.read_text())  # join shell line continuations
        found += [(f"{path.relative_to(ROOT)}", m.group(0)) for m in COMMAND.finditer(text)]
    return found


COMMANDS = recorded_commands()


def fill_placeholders(words: list[str]) -> list[str]:
    """`--gan ...` stands for a value; `--inverter a=X ...` (after a value) for more of the same: dropped."""
    out: list[str] = []
    for word in words:
        if word in PLACEHOLDERS:
            if out and out[-1].startswith("--"):
                out.append("VALUE")
            continue
        out.append(word)
    return out


def test_the_docs_and_manifests_record_many_commands() -> None:
    # Guards the extraction itself: a regex that silently matched nothing would pass every case below.
    assert len(COMMANDS) > 100
    assert any(source.startswith("models/") for source, _ in COMMANDS)


@pytest.mark.parametrize(("source", "command"), COMMANDS, ids=[f"{s}:{i}" for i, (s, _) in enumerate(COMMANDS)])
def test_recorded_command_parses(source: str, command: str) -> None:
    words = shlex.split(command)[3:]  # drop `python -m training`
    if words and words[0] in PLACEHOLDERS:
        return  # "python -m training ...": the CLI in general
    # typer ≥ 0.24 ships its own copy of click, so groups are told apart by their `commands`, not by class.
    node = typer.main.get_command(app)
    path = []
    while hasattr(node, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        assert name in node.commands, f"{source}: {command!r}: no command {' '.join([*path, name])!r}"
        node, path = node.commands[name], [*path, name]
    if hasattr(node, "commands"):
        assert not words, f"{source}: {command!r}: {' '.join(path) or 'the top level'} is a group, not a command"
        return  # a bare group name ("python -m training export") is a pointer to its --help
    ctx = node.make_context(" ".join(path), [], resilient_parsing=True)
    parser = node.make_parser(ctx)
    try:
        _, leftover, _ = parser.parse_args(fill_placeholders(words))
    except Exception as error:  # the click copy's UsageError (NoSuchOption, BadOptionUsage, ...)
        pytest.fail(f"{source}: {command!r}: {getattr(error, 'format_message', error.__str__)()}")
    arguments = [p for p in node.params if p.param_type_name == "argument"]
    assert len(leftover) <= sum(1 if a.nargs == 1 else len(leftover) for a in arguments), (
        f"{source}: {command!r}: stray words {leftover}"
    )
