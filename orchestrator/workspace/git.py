"""A thin typed wrapper around the git command line. Every call goes through `orchestrator.proc.run_command`
with an argv list: no shell, no GitPython.

Every command we run gets:
- hooks off and signing off (the commits we make must not run the user's hooks or wait on a gpg prompt);
- no editor, no pager, no terminal prompt, and no optional locks (so a read such as `status` in the
  user's checkout never rewrites the user's index);
- no background gc or fsmonitor daemon (they would outlive the command);
- an identity: the user's configured one, else `ai-agents-orchestrator <orchestrator@localhost>`
  (CI machines often have none);
- a brief retry when git's own lock files collide (two runs on one repository), with tenacity, each
  retry reported (orchestrator/retries.py); no other git failure is retried.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from orchestrator.errors import GitError
from orchestrator.proc import CommandResult, child_env, run_command
from orchestrator.retries import RetryNote, report_retry, short

FALLBACK_NAME = "ai-agents-orchestrator"
FALLBACK_EMAIL = "orchestrator@localhost"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

# Always on the command line, before the subcommand.
_FIXED_CONFIG: tuple[str, ...] = (
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.fsmonitor=false",
    "color.ui=false",
    "core.quotePath=false",
    "advice.detachedHead=false",
    "rerere.enabled=false",
    "core.splitIndex=false",  # a temporary index copied from the user's must not write shared index files
)

# Variables of the user's environment that git should still see. GIT_DIR, GIT_WORK_TREE and
# GIT_INDEX_FILE are deliberately absent: inherited from a hook, they would point git elsewhere.
_GIT_PASSTHROUGH: tuple[str, ...] = (
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_CEILING_DIRECTORIES",
    # How git reaches an SSH remote (a cluster's `--remote git@host:...`): the user's agent socket and
    # ssh command. Paths and commands, never a key; only git and its ssh see them, no agent does.
    "SSH_AUTH_SOCK",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
)

_QUIET_ENV: dict[str, str] = {
    "GIT_EDITOR": "true",
    "GIT_SEQUENCE_EDITOR": "true",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_MERGE_AUTOEDIT": "no",
    "LC_ALL": "C",  # git's messages in English: we match lock errors by their words
}

# A lock held by another git process: worth a short wait. "but expected" is a compare-and-swap
# failure on a ref, which waiting does not cure.
_LOCK_ERROR = re.compile(
    r"\.lock\b.*(File exists|exists)|cannot lock ref|could not lock|Unable to create .*\.lock"
)
_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.2, 1.6)
# Commands that never write a commit, tag or note, so never need an author or committer: they run without
# the identity look-up (one `git config` process per Git object, 5 to 15 ms each).
_NO_IDENTITY_NEEDED = frozenset(
    {
        "rev-parse", "status", "diff", "diff-tree", "diff-index", "diff-files", "ls-files", "ls-tree",
        "cat-file", "show", "log", "for-each-ref", "merge-base", "rev-list", "config", "remote",
        "check-ignore", "show-ref", "count-objects",
    }
)  # fmt: skip


def git_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment for a git child: allowlisted variables, git's own, and the quiet set."""
    parent = os.environ if environ is None else environ
    extra = {key: parent[key] for key in _GIT_PASSTHROUGH if key in parent}
    extra.update(_QUIET_ENV)
    return child_env(parent, extra)


class Git:
    """git, run in one directory (a repository's work tree or a run's worktree)."""

    retry_delays_s: tuple[float, ...] = _RETRY_DELAYS_S  # waits between tries when a lock is held

    def __init__(
        self, path: Path, *, environ: Mapping[str, str] | None = None, timeout_s: float = 120.0
    ) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._env = git_environment(environ)
        self._identity: tuple[str, ...] | None = None
        self._location: tuple[str, ...] = ()  # e.g. --git-dir=... --work-tree=...: no discovery

    def at(self, path: Path, *, location: tuple[str, ...] = ()) -> Git:
        """git in another directory (same environment, same identity); `location` options, such as
        an explicit --git-dir and --work-tree, go before every subcommand."""
        other = Git(path, timeout_s=self.timeout_s)
        other._env = self._env
        other._identity = self._identity
        other._location = location
        other.retry_delays_s = self.retry_delays_s
        return other

    def run(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,  # noqa: A002 - mirrors subprocess
        timeout_s: float | None = None,
    ) -> CommandResult:
        """Run `git <args>`; with check, a failure raises GitError carrying git's own words."""
        argv = [
            "git",
            *self._config_args(with_identity=not args or args[0] not in _NO_IDENTITY_NEEDED),
            *args,
        ]
        full_env = {**self._env, **(env or {})}

        def attempt() -> CommandResult:
            return run_command(
                argv, self.path, env=full_env, input=input, timeout_s=timeout_s or self.timeout_s
            )

        result = attempt()
        if not result.ok and _is_lock_collision(result):
            result = self._retry_lock_collision(attempt, result, args)
        if check and not result.ok:
            raise git_error(result, args)
        return result

    def _retry_lock_collision(
        self, attempt: Callable[[], CommandResult], failed: CommandResult, args: tuple[str, ...]
    ) -> CommandResult:
        """Another git holds a lock (index.lock, a ref's lock): wait and try again, each retry reported
        (a log line, and a "retry" notice in the run's log during a run). `failed` is the first try's
        result; the last result is given back whatever it is."""
        import tenacity  # here: only a collision needs it (4 ms off every start)

        delays = self.retry_delays_s
        tries = len(delays) + 1
        results = iter([failed])

        def next_try() -> CommandResult:
            return next(results, None) or attempt()  # the failure already seen is try 1

        def before_sleep(state: tenacity.RetryCallState) -> None:
            last: CommandResult = state.outcome.result()  # type: ignore[union-attr]
            wait_s = state.next_action.sleep if state.next_action is not None else 0.0
            why = short(f"git {' '.join(args[:2])}: {last.stderr.strip()}")
            report_retry(RetryNote("git_lock", state.attempt_number, tries, wait_s, why))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda r: not r.ok and _is_lock_collision(r)),
            wait=lambda state: delays[min(state.attempt_number, len(delays)) - 1],
            stop=tenacity.stop_after_attempt(tries),
            before_sleep=before_sleep,
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
        )
        result: CommandResult = retrying(next_try)
        return result

    def out(self, *args: str, env: Mapping[str, str] | None = None, input: str | None = None) -> str:  # noqa: A002
        """stdout of a command that must succeed, without the trailing newline."""
        return self.run(*args, env=env, input=input).stdout.rstrip("\n")

    def succeeds(self, *args: str, env: Mapping[str, str] | None = None) -> bool:
        return self.run(*args, check=False, env=env).ok

    def rev_parse(self, rev: str) -> str | None:
        """The full object id `rev` names, or None when it names nothing."""
        result = self.run("rev-parse", "-q", "--verify", "--end-of-options", rev, check=False)
        return result.stdout.strip() if result.ok else None

    def commit_of(self, rev: str) -> str:
        sha = self.rev_parse(f"{rev}^{{commit}}")
        if sha is None:
            raise GitError(f"{rev!r} does not name a commit in {self.path}")
        return sha

    def is_ancestor(self, older: str, newer: str) -> bool:
        result = self.run("merge-base", "--is-ancestor", older, newer, check=False)
        if result.returncode not in (0, 1):
            raise git_error(result, ("merge-base", "--is-ancestor", older, newer))
        return result.returncode == 0

    def _config_args(self, *, with_identity: bool = True) -> list[str]:
        args: list[str] = []
        for item in _FIXED_CONFIG:
            args += ["-c", item]
        return args + list(self.identity_args() if with_identity else ()) + list(self._location)

    def identity_args(self) -> tuple[str, ...]:
        """`-c user.name=... -c user.email=...` for whatever the user has not configured."""
        if self._identity is None:
            probe = run_command(
                ["git", "config", "--get-regexp", r"^user\.(name|email)$"],
                self.path,
                env=self._env,
                timeout_s=self.timeout_s,
            )
            keys = {line.split(" ", 1)[0].lower() for line in probe.stdout.splitlines() if line.strip()}
            self.note_identity(keys)
        assert self._identity is not None
        return self._identity

    def note_identity(self, configured: set[str]) -> None:
        """Which of user.name and user.email (lower-case keys) the user's config sets, when read by a
        command of the caller's (run_repo.copied_config): identity_args then needs no probe."""
        identity: list[str] = []
        if "user.name" not in configured:
            identity += ["-c", f"user.name={FALLBACK_NAME}"]
        if "user.email" not in configured:
            identity += ["-c", f"user.email={FALLBACK_EMAIL}"]
        self._identity = tuple(identity)


def _is_lock_collision(result: CommandResult) -> bool:
    text = result.stderr
    return bool(_LOCK_ERROR.search(text)) and "but expected" not in text


class GitCommandFailed(GitError):
    """A git command failed; `result` holds its exit code and output."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


def git_error(result: CommandResult, args: tuple[str, ...] | list[str]) -> GitCommandFailed:
    what = " ".join(args[:3])
    if result.timed_out:
        return GitCommandFailed(f"`git {what}` timed out after {result.duration_s:.0f}s", result)
    detail = (result.stderr or result.stdout).strip()[-2000:]
    return GitCommandFailed(f"`git {what}` failed (exit {result.returncode}): {detail}", result)


def find_repo_root(path: Path, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """The top of the work tree holding `path`, or None outside any repository (or inside a .git dir)."""
    path = Path(path)
    if not path.is_dir():
        return None
    result = Git(path, environ=environ).run("rev-parse", "--show-toplevel", check=False)
    if not result.ok or not result.stdout.strip():
        return None
    return Path(result.stdout.strip()).resolve()


def init_repo(path: Path, *, environ: Mapping[str, str] | None = None) -> Path:
    """A repository at `path` with at least one commit, for work started outside any repository.

    An existing repository rooted at `path` is kept (and given an initial commit if it has none)."""
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    git = Git(path, environ=environ)
    if find_repo_root(path, environ=environ) != path:
        configured = git.run("config", "--get", "init.defaultBranch", check=False).stdout.strip()
        git.run("init", "-q", f"--initial-branch={configured or 'main'}")
    if git.rev_parse("HEAD") is None:
        git.run(
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            "Initial commit (ai-agents-orchestrator workspace)",
        )
    return path


@functools.cache
def git_version() -> tuple[int, ...]:
    """The installed git's version, e.g. (2, 39, 5)."""
    text = run_command(["git", "--version"], Path("/"), env=git_environment()).stdout
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return (0,)
    return tuple(int(part) for part in match.groups() if part is not None)
