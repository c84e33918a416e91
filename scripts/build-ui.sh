#!/usr/bin/env bash
# The dashboard's browser libraries: installed from npm at the versions pinned in
# orchestrator/ui/package-lock.json, and their built files copied into orchestrator/ui/static/vendor
# (ignored by git: produced here, shipped in the wheel as package data). No CDN: the dashboard works
# offline. Idempotent and quiet.
set -euo pipefail
cd "$(dirname "$0")/../orchestrator/ui"
if ! command -v npm >/dev/null 2>&1; then
  echo "scripts/build-ui.sh: npm is needed to build the dashboard's assets (install Node.js >= 18)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --silent
vendor=static/vendor
mkdir -p "$vendor"
cp node_modules/socket.io-client/dist/socket.io.min.js "$vendor/"
cp node_modules/diff2html/bundles/js/diff2html-ui.min.js "$vendor/"
cp node_modules/diff2html/bundles/css/diff2html.min.css "$vendor/"
cp node_modules/highlight.js/styles/github.min.css "$vendor/hljs-github.css"
cp node_modules/highlight.js/styles/github-dark.min.css "$vendor/hljs-github-dark.css"
# Their licences travel with them.
cp node_modules/socket.io-client/LICENSE "$vendor/LICENSE.socket.io-client"
cp node_modules/diff2html/LICENSE.md "$vendor/LICENSE.diff2html"
cp node_modules/highlight.js/LICENSE "$vendor/LICENSE.highlight.js"
