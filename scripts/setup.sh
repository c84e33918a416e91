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
# The OS sandbox the tests run agents in (orchestrator/workspace/sandbox.py): bubblewrap, when it is
# missing and we can install it (root with apt, as on a fresh CI machine). Elsewhere: your package manager.
if [ "${1:-}" = "test" ] && ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }
  else
    echo "setup: bwrap is missing; install bubblewrap for the sandbox tests" >&2
  fi
fi
