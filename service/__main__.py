"""`python -m service`: run the API with uvicorn on Settings.host / PORT (`--print-settings` lists every setting).

Bad settings stop the start with one line per problem on stderr, naming the environment variable, and exit status 2
(`exit_on_bad_settings`, also used by `python -m service.worker`); the value is shown except for secrets (API keys,
the Redis URL, which may hold a password). uvicorn runs with a header cap, a header and body read timeout
(service/timeouts.py), a keep-alive timeout and a connection limit, all from Settings.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError

from service.settings import Settings, get_settings

SECRET_FIELDS = {"api_keys", "redis_url"}  # their values never reach a message
BAD_SETTINGS_STATUS = 2  # as for a bad command line


def print_settings() -> None:
    for name, field in Settings.model_fields.items():
        env = f"DFI_{name.upper()}"
        if field.validation_alias is not None:
            env = " / ".join(getattr(field.validation_alias, "choices", [env]))
        print(f"| `{env}` | `{field.default!r}` | {field.description or ''} |")


def _env_names() -> dict[str, tuple[str, list[str]]]:
    """Field name and each alias → (field name, its environment variables in pydantic-settings' order)."""
    names: dict[str, tuple[str, list[str]]] = {}
    for name, field in Settings.model_fields.items():
        choices = [str(choice) for choice in getattr(field.validation_alias, "choices", None) or []]
        entry = (name, choices or [f"DFI_{name.upper()}"])
        names[name] = entry
        for choice in choices:
            names[choice] = entry
    return names


def _env_name(variables: list[str]) -> str:
    """The variable that was set (the first that is, as pydantic-settings reads them), else the first."""
    present = {key.upper() for key in os.environ}
    return next((variable for variable in variables if variable.upper() in present), variables[0])


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def settings_problems(error: ValidationError | SettingsError) -> list[str]:
    """One line per problem, `DFI_NAME: what is wrong (got 'value')`."""
    names = _env_names()
    if isinstance(error, SettingsError):  # a list or dict setting that is not valid JSON
        found = re.search(r'field "(\w+)"', str(error))
        env = _env_name(names[found.group(1)][1]) if found and found.group(1) in names else "environment"
        cause = f": {error.__cause__}" if error.__cause__ is not None else ""
        return [f'{env}: not valid JSON (give a JSON list, e.g. ["a", "b"]){cause}']
    lines = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        loc = item.get("loc", ())
        if not loc:  # a check across several settings: name the ones it mentions
            for name, (_, variables) in names.items():
                if "_" in name and name == name.lower():
                    message = re.sub(rf"\b{name}\b", _env_name(variables), message)
            lines.append(message)
            continue
        field, variables = names.get(str(loc[0]), (str(loc[0]), [str(loc[0])]))
        env = _env_name(variables)
        message = message.removeprefix(f"{env}: ")  # the validators that name the variable themselves
        where = env + "".join(f"[{part}]" for part in loc[1:])
        shown = "" if field in SECRET_FIELDS or "input" not in item else f" (got {_shown(item['input'])})"
        lines.append(f"{where}: {message}{shown}")
    return lines


@contextmanager
def exit_on_bad_settings() -> Iterator[None]:
    """Around the first `get_settings()`: print `settings: ...` lines and exit 2 instead of a pydantic traceback."""
    try:
        yield
    except (ValidationError, SettingsError) as error:
        for line in settings_problems(error):
            print(f"settings: {line}", file=sys.stderr)
        raise SystemExit(BAD_SETTINGS_STATUS) from None


def main() -> None:
    if "--print-settings" in sys.argv:
        print_settings()
        return
    with exit_on_bad_settings():
        settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from service.app import create_app
    from service.timeouts import ReadTimeout, http_protocol

    # One process: the models live in memory once and micro-batching needs every request in the same loop.
    # ReadTimeout wraps the whole app (outside FastAPI's own middleware), so its 408 is sent whatever a route does.
    app = ReadTimeout(create_app(settings), settings.request_read_timeout_s)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=30,
                http=http_protocol(settings.max_header_bytes, settings.request_read_timeout_s),
                h11_max_incomplete_event_size=settings.max_header_bytes,  # the cap when h11 serves (no httptools)
                timeout_keep_alive=settings.keep_alive_timeout_s,
                limit_concurrency=settings.max_connections)  # fmt: skip


if __name__ == "__main__":
    main()
