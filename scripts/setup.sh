#!/usr/bin/env bash
# Install the project into .venv and the pinned coding CLIs into the orchestrator's cache folder.
# Usage: scripts/setup.sh [test]   ("test" adds the test tools, and Chromium for the dashboard's tests)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# The dashboard's browser libraries (npm, pinned in orchestrator/ui/package-lock.json) before the
# install, so a wheel built from this tree ships them.
scripts/build-ui.sh
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${extras}"
# The real CLIs at the versions our adapters are tested with (orchestrator/adapters/pins.py).
.venv/bin/orchestrator install-clis
if [ "${1:-}" = "test" ] && [ ! -x /usr/bin/chromium ]; then
  # tests/ui drive Debian's Chromium through Playwright's bundled driver (never `playwright install`).
  sudo_=""
  [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >/dev/null
fi
