#!/usr/bin/env bash
# Drift check: do the newest published coding CLIs still pass our real-CLI suite?
# Installs the newest versions beside the pinned ones (the pinned stay in the cache folder), runs
# tests/real/test_<cli>.py against each, and prints per CLI: pinned version, newest version, tests
# passed and failed, and what changed in its --help since the pinned version.
# Usage: scripts/drift.sh [CLI...]   (default: all four; DRIFT_DIR=folder for the newest, kept after)
# Exit status: 0 when every newest CLI passes, 1 when one fails, 2 when the set-up itself fails.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || { echo "run scripts/setup.sh test first" >&2; exit 2; }
clis=("$@")
[ ${#clis[@]} -gt 0 ] || clis=(claude codex gemini copilot)
latest_dir="${DRIFT_DIR:-$(mktemp -d -t orchestrator-drift.XXXXXX)}"
out="$latest_dir/drift-report"
mkdir -p "$out"
pinned_bin="$("$py" -c 'import os; from orchestrator.adapters.base import cli_cache_bin_dir as d; print(d(os.environ))')"

echo "installing the newest ${clis[*]} into $latest_dir ..." >&2
if ! .venv/bin/orchestrator install-clis --latest --prefix "$latest_dir" "${clis[@]}" >&2; then
  echo "could not install the newest CLIs (see above)" >&2
  exit 2
fi
[ -x "$pinned_bin/${clis[0]}" ] || .venv/bin/orchestrator install-clis "${clis[@]}" >&2

status=0
for cli in "${clis[@]}"; do
  echo "running tests/real/test_$cli.py against the newest $cli ..." >&2
  # ORCHESTRATOR_CLI_DIR points the adapters (and the suite) at the newest install; PATH must not
  # hold another copy of the CLI, or that one would be found first.
  ORCHESTRATOR_CLI_DIR="$latest_dir" "$py" -m pytest "tests/real/test_$cli.py" -q -p no:cacheprovider \
    --junitxml="$out/$cli.xml" >"$out/$cli.pytest.txt" 2>&1 || status=1
  # --help as a CLI prints it at 80 columns; NO_COLOR so escape codes do not show up as changes.
  env COLUMNS=80 NO_COLOR=1 "$pinned_bin/$cli" --help >"$out/$cli.help.pinned" 2>&1 </dev/null || true
  env COLUMNS=80 NO_COLOR=1 "$latest_dir/node_modules/.bin/$cli" --help >"$out/$cli.help.latest" 2>&1 </dev/null || true
done

"$py" - "$latest_dir" "$out" "${clis[@]}" <<'PY'
import difflib, json, sys, xml.etree.ElementTree as ET
from pathlib import Path
from orchestrator.adapters.pins import PINNED

latest_dir, out, clis = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
rows, changes = [], []
for cli in clis:
    pin = PINNED[cli]
    manifest = latest_dir / "node_modules" / pin.package / "package.json"
    newest = json.loads(manifest.read_text())["version"] if manifest.is_file() else "?"
    passed = failed = 0
    junit = out / f"{cli}.xml"
    if junit.is_file():
        for suite in ET.parse(junit).getroot().iter("testsuite"):
            total, bad = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            failed += bad
            passed += total - bad - int(suite.get("skipped", 0))
    old = (out / f"{cli}.help.pinned").read_text(errors="replace").splitlines()
    new = (out / f"{cli}.help.latest").read_text(errors="replace").splitlines()
    diff = [l for l in difflib.unified_diff(old, new, "pinned", "newest", lineterm="", n=0)
            if not l.startswith(("---", "+++", "@@"))]
    help_change = "same" if not diff else f"+{sum(l.startswith('+') for l in diff)} -{sum(l.startswith('-') for l in diff)} lines"
    rows.append((cli, pin.version, newest, str(passed), str(failed), help_change))
    if diff:
        changes.append((cli, diff))
head = ("cli", "pinned", "newest", "passed", "failed", "--help")
widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
for row in [head, *rows]:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
for cli, diff in changes:
    print(f"\n{cli} --help, pinned -> newest:")
    for line in diff[:60]:
        print("  " + line)
    if len(diff) > 60:
        print(f"  ... {len(diff) - 60} more lines in {out}/{cli}.help.*")
print(f"\npytest output per CLI: {out}/<cli>.pytest.txt")
PY
exit $status
