"""The OS sandbox for agents and gates: bubblewrap, where it works on this machine.

Inside it a process sees the whole filesystem read-only, except what its step needs to write: the run's
repository (or, for `run-agent`, the folder it was pointed at), its own run folder (settings, usage
reports, TMPDIR) and the CLI's own state folders (sessions, logs, caches: `cli_state_paths`). The user's
checkout, their `.git`, the orchestrator's store, the transcripts and the installed CLIs stay read-only,
so nothing an agent runs can change them, whatever it does. Inside the CLI's state folders, the files
that can name commands the CLI runs later (hooks, MCP servers) stay read-only too: a command planted there
would run outside the sandbox the next time the CLI runs unsandboxed (`cli_protected_paths`). The network, the process tree and the
environment are left as they are (proc.py ends the tree; the environment is built from an allowlist).

Setting (`sandbox:` in the config): `auto` (the default) uses bubblewrap when `bwrap` runs here and is
off otherwise, which `orchestrator agents` says; `bwrap` requires it (a run is refused without it);
`off` never uses it.

Gates run in it too: a gate runs the code the agents wrote (`pytest` imports it), so it is as
untrusted as the agent itself. Gates may write their run repository and the run's TMPDIR only.

Building the argv is pure (`bwrap_argv`); only `probe_bwrap` runs a process.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator.errors import UsageError
from orchestrator.proc import child_env, run_command

SandboxSetting = Literal["auto", "bwrap", "off"]
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
)


def bwrap_argv(
    argv: Sequence[str],
    *,
    bwrap: str,
    writable: Sequence[Path],
    cwd: Path,
    read_only: Sequence[Path] = (),
) -> list[str]:
    """`argv` run by bubblewrap: everything read-only but `writable` (missing ones are skipped), and
    `read_only` again inside those (files that must not change even there)."""
    wrapped = [
        bwrap,
        "--die-with-parent",  # bwrap's own child gets SIGKILL if bwrap goes (and with it the namespace)
        # A process namespace of its own: the sandboxed tree cannot signal, ptrace or write the memory
        # (/proc/<pid>/mem) of the orchestrator or anything else outside it; its own /proc is writable,
        # which a CLI's own nested sandbox needs (Codex's bubblewrap writes its uid map there).
        "--unshare-pid",
        "--ro-bind",
        "/",
        "/",
        "--dev-bind",  # the host's devices (/dev/null, ptys, /dev/shm) as they are
        "/dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    for path in _outermost(writable):
        wrapped += ["--bind-try", str(path), str(path)]
    for path in sorted({Path(os.path.abspath(p)) for p in read_only}):
        wrapped += ["--ro-bind-try", str(path), str(path)]
    return [*wrapped, "--chdir", str(cwd), "--", *argv]


def _outermost(paths: Sequence[Path]) -> list[Path]:
    """Absolute, without duplicates or paths inside another one, outer first (a bind over a bind
    would hide the outer one's view of it)."""
    unique = sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: (len(p.parts), str(p)))
    kept: list[Path] = []
    for path in unique:
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return kept


def cli_state_paths(agent: str | None, env: Mapping[str, str]) -> list[Path]:
    """Where each CLI keeps its own state (found by running the pinned CLIs in the sandbox): it must
    write there to work at all (sessions, logs, its own settings, caches)."""
    if agent is None:
        return []
    home = Path(env.get("HOME") or Path.home())
    cache = Path(env.get("XDG_CACHE_HOME") or home / ".cache")
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    state = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state")
    if agent == "claude":
        folder = Path(env["CLAUDE_CONFIG_DIR"]) if env.get("CLAUDE_CONFIG_DIR") else home / ".claude"
        return [folder, home / ".claude.json", home / ".claude.json.backup", cache / "claude-cli-nodejs"]
    if agent == "codex":
        return [Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else home / ".codex"]
    if agent == "gemini":
        gemini_home = Path(env.get("GEMINI_CLI_HOME") or home)
        return [gemini_home / ".gemini"]
    if agent == "copilot":
        folder = Path(env["COPILOT_HOME"]) if env.get("COPILOT_HOME") else home / ".copilot"
        return [folder, config / "github-copilot", cache / "copilot", state / ".copilot"]
    if agent == "fake" and env.get("ORCHESTRATOR_FAKE_SCENARIO"):
        # The fake agent keeps its place in the scenario in a file beside it (fake_agent.py), and so
        # does each group member with a scenario of its own (<scenario>.<member>.yaml); the prompts
        # they were given go beside the scenario too.
        scenario = Path(env["ORCHESTRATOR_FAKE_SCENARIO"])
        members = sorted(scenario.parent.glob(f"{scenario.stem}.*{scenario.suffix}"))
        states = [path.with_name(path.name + ".state") for path in (scenario, *members)]
        return [*states, *(path.with_name(path.name + ".prompts.jsonl") for path in (scenario, *members))]
    return []


_STATE_FILES = (".json", ".backup", ".state", ".jsonl")


def cli_protected_paths(agent: str | None, env: Mapping[str, str]) -> list[Path]:
    """Files in the CLIs' state folders that can name commands the CLI runs later (hooks, MCP servers,
    `notify`), also when it runs outside the sandbox (`orchestrator agents` runs `--version`, the user
    runs it by hand): kept read-only so that an agent cannot plant a command that runs unsandboxed."""
    home = Path(env.get("HOME") or Path.home())
    if agent == "claude":
        folder = Path(env["CLAUDE_CONFIG_DIR"]) if env.get("CLAUDE_CONFIG_DIR") else home / ".claude"
        return [folder / "settings.json", folder / "settings.local.json"]
    if agent == "codex":
        return [(Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else home / ".codex") / "config.toml"]
    if agent == "gemini":
        return [Path(env.get("GEMINI_CLI_HOME") or home) / ".gemini" / "settings.json"]
    if agent == "copilot":
        folder = Path(env["COPILOT_HOME"]) if env.get("COPILOT_HOME") else home / ".copilot"
        return [folder / "mcp-config.json"]
    return []


def _prepare(paths: Sequence[Path]) -> None:
    """Make the state folders and files that do not exist yet, so the CLI can write in them (a
    missing path cannot be bound: bwrap skips it, and the CLI could not create it in a read-only
    HOME)."""
    for path in paths:
        if path.exists():
            continue
        try:
            if path.suffix in _STATE_FILES:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.suffix != ".json":  # an empty file is no valid JSON: a CLI makes its own
                    path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only HOME: the CLI will say what it misses


def cli_mount_points(agent: str | None) -> list[Path]:
    """Folders a CLI's own nested sandbox mounts over, which must exist beforehand: inside ours the
    root is read-only, so the CLI cannot make them itself. Codex (0.171) hides its app-server daemon's
    socket folder, `/tmp/codex-daemon-<uid>` (always under /tmp, whatever TMPDIR says), from the
    commands it sandboxes; when the folder is missing, every write and command fails as a sandbox
    violation. Codex makes the same empty folder itself when it runs unsandboxed."""
    if agent == "codex":
        return [Path("/tmp") / f"codex-daemon-{os.geteuid()}"]
    return []


def _prepare_mount_points(paths: Sequence[Path]) -> None:
    for path in paths:
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            pass  # /tmp not writable here: the CLI will report its sandbox failure


def _prepare_protected(paths: Sequence[Path]) -> None:
    """A protected file that does not exist yet is made (empty: `{}` for JSON), so that it can be
    mounted read-only: a missing one could be created by an agent inside the writable folder."""
    for path in paths:
        if path.exists() or not path.parent.is_dir():
            continue
        try:
            path.write_text("{}\n" if path.suffix == ".json" else "")
        except OSError:
            pass


@dataclass(frozen=True)
class Sandbox:
    """Whether agents and gates run sandboxed here, and with what."""

    kind: Literal["bwrap", "off"]
    executable: str | None = None
    note: str = ""  # why it is off, or what is used

    @property
    def on(self) -> bool:
        return self.kind == "bwrap"

    def wrap(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        writable: Sequence[Path],
        env: Mapping[str, str],
        agent: str | None = None,
    ) -> list[str]:
        """`argv` in the sandbox (or as it is when off). A program that cannot be found is not
        wrapped, so that spawning it still fails as "not installed"."""
        if not self.on or self.executable is None or not argv or not _findable(argv[0], env):
            return list(argv)
        state = cli_state_paths(agent, env)
        _prepare(state)
        protected = cli_protected_paths(agent, env)
        _prepare_protected(protected)
        _prepare_mount_points(cli_mount_points(agent))
        extra = [Path(env["TMPDIR"])] if env.get("TMPDIR") else []
        return bwrap_argv(
            argv,
            bwrap=self.executable,
            writable=[*writable, *extra, *state],
            cwd=cwd,
            read_only=protected,
        )


SANDBOX_OFF = Sandbox("off", note="off (`sandbox: off` in the config)")


def _findable(program: str, env: Mapping[str, str]) -> bool:
    if os.sep in program:
        return os.access(program, os.X_OK)
    return shutil.which(program, path=env.get("PATH", os.defpath)) is not None


# executable -> its probe's answer, once per process; a Future so that a probe started ahead of time
# (probe_in_background) is waited for, not run twice.
_probes: dict[str, Future[str | None]] = {}
_probes_lock = threading.Lock()


def probe_bwrap(executable: str) -> str | None:
    """None when `executable` can make a sandbox here, else why not (its own words)."""
    with _probes_lock:
        probe = _probes.get(executable)
        mine = probe is None
        if probe is None:
            probe = _probes[executable] = Future()
    if mine:
        try:
            answer = _probe(executable)
        except BaseException as exc:  # ^C meanwhile: whoever waits for this probe gets it too
            probe.set_exception(exc)
            raise
        probe.set_result(answer)
    return probe.result()


def probe_in_background(setting: SandboxSetting, env: Mapping[str, str]) -> None:
    """Start the probe resolve_sandbox will need, in a thread, so that its process (some 20 ms) runs
    while the run is being prepared rather than on the way to the first CLI. The thread is not a
    daemon: at exit the interpreter waits for it, so its process never outlives the orchestrator."""
    if setting == "off":
        return
    executable = shutil.which("bwrap", path=env.get("PATH", os.defpath))
    if executable is not None and executable not in _probes:
        threading.Thread(target=probe_bwrap, args=(executable,), name="bwrap-probe").start()


def _probe(executable: str) -> str | None:
    try:
        result = run_command(
            bwrap_argv(["true"], bwrap=executable, writable=(), cwd=Path("/")),
            Path("/"),
            env=child_env(os.environ, {}),
            timeout_s=15,
        )
    except Exception as exc:  # not executable, or gone between which() and the spawn
        return str(exc)
    if result.ok:
        return None
    return (result.stderr or result.stdout).strip()[-300:] or f"exit {result.returncode}"


def resolve_sandbox(setting: SandboxSetting, env: Mapping[str, str]) -> Sandbox:
    """The sandbox a run gets with this setting here. `bwrap` without a working bwrap is a
    configuration error (exit 2)."""
    if setting == "off":
        return SANDBOX_OFF
    executable = shutil.which("bwrap", path=env.get("PATH", os.defpath))
    problem = "bwrap is not installed" if executable is None else probe_bwrap(executable)
    if executable is not None and problem is None:
        return Sandbox("bwrap", executable, note=f"bubblewrap ({executable})")
    if setting == "bwrap":
        raise UsageError(
            f"the config asks for `sandbox: bwrap`, but {problem}",
            hint=f"{INSTALL_HINT}; in a container, allow user namespaces; or set `sandbox: auto`",
        )
    return Sandbox("off", note=f"off: {problem} ({INSTALL_HINT}, or allow user namespaces)")
