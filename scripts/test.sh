#!/usr/bin/env bash
# The test command: set-up on a fresh machine, lint, then the default (fast, CPU) test suite.
# Slow runs are behind the `slow` marker: bash scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest -m "not slow" "$@"
