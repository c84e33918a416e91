#!/usr/bin/env bash
# The main job on a fresh machine: install, check the CLIs, and run the demo (no account needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/orchestrator agents
.venv/bin/orchestrator demo
