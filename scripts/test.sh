#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole suite (real CLIs included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
