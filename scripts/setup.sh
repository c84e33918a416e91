#!/usr/bin/env bash
# Install the project into .venv and the pinned coding CLIs into the orchestrator's cache folder.
# Usage: scripts/setup.sh [test]   ("test" adds the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${extras}"
# The real CLIs at the versions our adapters are tested with (orchestrator/adapters/pins.py).
.venv/bin/orchestrator install-clis
