"""A guard on the refs a run's worktree shares with the user's checkout.

A linked worktree shares every ref but HEAD with the user's repository: an agent's `git stash` in the run
writes the user's stash list, `git tag` and `git checkout -b` write the user's tags and branches. Git's
`reference-transaction` hook (git >= 2.28) sees every ref update before it happens and may refuse it.
The agents' git gets a hooks folder of ours (through GIT_CONFIG_COUNT in their environment, git >= 2.31;
nothing in the user's configuration changes) whose reference-transaction hook lets through only:

- HEAD and other per-worktree pseudo-refs (ORIG_HEAD, MERGE_HEAD, ...), refs/worktree/*, refs/bisect/*,
  refs/rewritten/* (all private to the worktree);
- the run's own branch;
- refs/remotes/* (a fetch only refreshes what the user's remotes hold).

Every other hook in that folder runs the repository's own hook of the same name, if there is one, so a
project's pre-commit checks still apply to the agents' own commits. Our own git commands (orchestrator
.workspace.git) run with hooks off and are not affected.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from orchestrator.workspace.git import Git

GUARD_HOOK = "reference-transaction"

# Every hook git knows (githooks(5)); each gets a wrapper that runs the repository's own.
HOOK_NAMES: tuple[str, ...] = (
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "proc-receive",
    "post-receive",
    "post-update",
    "push-to-checkout",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
    "fsmonitor-watchman",
    "p4-changelist",
    "p4-prepare-changelist",
    "p4-post-changelist",
    "p4-pre-submit",
    "post-index-change",
)

_WRAPPER = """#!/bin/sh
# Written by ai-agents-orchestrator: runs the repository's own {name} hook, if it has one.
hook={hook}
if [ -x "$hook" ]; then exec "$hook" "$@"; fi
exit 0
"""

_GUARD = """#!/bin/sh
# Written by ai-agents-orchestrator. A run's worktree shares refs with the user's checkout; only the
# run's own branch and the worktree's private refs may change here.
input=$(cat)
if [ "$1" = prepared ]; then
  printf '%s\\n' "$input" | while read -r old new ref; do
    case "$ref" in
      ""|HEAD|refs/worktree/*|refs/bisect/*|refs/rewritten/*|refs/remotes/*|{branch}) ;;
      refs/*)
        echo "orchestrator: refused to update $ref: this run's worktree may change only its branch" \\
          "({branch}); stash, tags and other branches belong to the user's checkout" >&2
        exit 1 ;;
    esac
  done || exit 1
fi
hook={hook}
if [ -x "$hook" ]; then printf '%s\\n' "$input" | "$hook" "$@"; exit $?; fi
exit 0
"""


def original_hooks_dir(user: Git) -> str:
    """Where the repository's own hooks live: its core.hooksPath (kept relative when relative: hooks
    run at the top of the worktree, which holds the same files) or <common dir>/hooks."""
    out = user.run("config", "--show-scope", "--get-all", "core.hooksPath", check=False).stdout
    configured = [
        line.split("\t", 1)[1]
        for line in out.splitlines()
        if "\t" in line and not line.startswith("command\t")
    ]
    if configured and configured[-1]:
        return configured[-1]
    common = Path(user.out("rev-parse", "--git-common-dir"))
    return str((user.path / common / "hooks").resolve())


def install_guard(hooks_dir: Path, *, branch_ref: str, original: str) -> Path:
    """Write the guard and the wrappers into `hooks_dir` (rewritten each time: cheap, always current)."""
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for name in (*HOOK_NAMES, GUARD_HOOK):
        hook = shlex.quote(f"{original.rstrip('/')}/{name}")
        if name == GUARD_HOOK:
            text = _GUARD.format(branch=branch_ref, hook=hook)
        else:
            text = _WRAPPER.format(name=name, hook=hook)
        path = hooks_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return hooks_dir


def guard_env(hooks_dir: Path) -> dict[str, str]:
    """Environment entries that make an agent's git use the guard (git >= 2.31 reads GIT_CONFIG_COUNT)."""
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "core.hooksPath",
        "GIT_CONFIG_VALUE_0": str(hooks_dir),
    }
