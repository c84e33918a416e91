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
# The test path's system tools, only where missing: promtool (Debian's prometheus package) for the
# monitoring/ checks, bubblewrap and setpriv for the container start test and the agents' sandbox,
# PostgreSQL's server binaries for the store's tests on PostgreSQL (orchestrator/testing/postgres.py
# starts its own server in a temporary folder; the cluster Debian's package may start is not used).
# (Debian's prometheus package also brings the Prometheus service: where /usr/sbin/policy-rc.d does
# not forbid it, as it does on CI's machines, apt starts it on port 9090.)
if [ "${1:-}" = "test" ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
  command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
  command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing postgresql"
  # tests/ui drive Debian's Chromium through Playwright's bundled driver (never `playwright install`).
  [ -x /usr/bin/chromium ] || missing="$missing chromium"
  if [ -n "$missing" ]; then
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq >/dev/null
    # shellcheck disable=SC2086 # the package names are meant to split
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi
