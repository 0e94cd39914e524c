"""What every command module shares: the error exit, the run-folder start (command.txt), the resolved command
line, CPU threads, NAME=PATH options and the data-set options. Library packages never import `training.cli`."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from training.core.runs import RunDir  # torch-free: --help stays fast

DataOpt = Annotated[str, typer.Option("--data", help="fashion-mnist | emoji | gaussians | folder")]
DataDirOpt = Annotated[
    str | None, typer.Option(help="folder of the data set (Fashion-MNIST IDX files, image folder, emoji cache)")
]


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def named_paths(items: list[str], option: str) -> dict[str, Path]:
    """`NAME=PATH` option values (repeated option) → {name: path}; fails naming the bad value or repeated name."""
    named: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            fail(f"{option} takes NAME=PATH, got {item!r}")
        if name in named:
            fail(f"row name {name!r} given twice")
        named[name] = Path(path)
    return named


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Errors a user can fix (a bad option value, a missing file or data set, a folder in the way) end the
    command with `error: <message>` and exit code 2, not a traceback. Missing data sets (DataSourceMissing) are
    FileNotFoundErrors and bundle errors (BundleError) ValueErrors, so both are covered; `extra` adds more."""
    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError, *extra) as error:
        fail(str(error))


def start_run(ctx: typer.Context, folder: Path, config: Any = None) -> Path:
    """Create a run folder and record the resolved command in it (command.txt), before any training starts.

    With `config`, a folder that already holds another run's config.json is refused first (ValueError), so its
    command.txt is never overwritten by a command whose training would then refuse the folder."""
    run = RunDir(folder)
    if config is not None:
        run.check_config(config)
    run.write_command(command_line(ctx))
    return folder


def command_line(ctx: typer.Context) -> str:
    """The command with every option resolved (defaults included), so a run folder says exactly what ran."""
    names, node = [], ctx
    while node.parent is not None:
        names.insert(0, node.info_name or "")
        node = node.parent
    words = ["python", "-m", "training", *names]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or getattr(param, "param_type_name", "") != "option":
            continue
        if isinstance(value, bool):  # a --flag/--no-flag pair takes no value
            flag = param.opts[0] if value else next(iter(getattr(param, "secondary_opts", [])), None)
            words += [flag] if flag else []
            continue
        words += [param.opts[0], str(value)]
    return " ".join(shlex.quote(w) for w in words)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def class_indices(name: str, data_dir: str | None, spec: str | None) -> tuple[int, ...]:
    """`--exclude-classes "trouser,8"`: class names or indices of data set `name`, as sorted indices."""
    if not spec:
        return ()
    from training.datasets import load_dataset

    names = load_dataset(name, "test", data_dir).class_names
    if not names:
        fail(f"data set {name!r} has no classes to leave out")
    chosen = set()
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        if item.isdigit() and int(item) < len(names):
            chosen.add(int(item))
        elif item in names:
            chosen.add(names.index(item))
        else:
            fail(f"--exclude-classes: {item!r} is not a class of {name} (0..{len(names) - 1} or one of {names})")
    return tuple(sorted(chosen))


def shape_of(name: str, data_dir: str | None, size: int | None, channels: int | None) -> tuple[int, ...]:
    if name == "fashion-mnist":
        return (1, 28, 28)
    if name == "emoji":
        return (3, 64, 64)
    if name == "gaussians":
        return (2,)
    if name == "folder":
        if not (data_dir and size and channels):
            fail("--data folder needs --data-dir, --size and --channels")
        return (channels, size, size)  # type: ignore[return-value]
    fail(f"unknown data set {name!r}; choose fashion-mnist, emoji, gaussians or folder")
    raise AssertionError
