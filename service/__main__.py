"""`python -m service`: run the API with uvicorn on Settings.host / PORT (`--print-settings` lists every setting)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from service.settings import Settings, get_settings


def print_settings() -> None:
    for name, field in Settings.model_fields.items():
        env = f"DFI_{name.upper()}"
        if field.validation_alias is not None:
            env = " / ".join(getattr(field.validation_alias, "choices", [env]))
        print(f"| `{env}` | `{field.default!r}` | {field.description or ''} |")


def main() -> None:
    if "--print-settings" in sys.argv:
        print_settings()
        return
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from service.app import create_app

    # One process: the models live in memory once and micro-batching needs every request in the same loop.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=30)  # fmt: skip


if __name__ == "__main__":
    main()
