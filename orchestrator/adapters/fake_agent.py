"""The fake coding agent: a real process that plays a scenario, for tests, the demo and benchmarks.

    python -m orchestrator.adapters.fake_agent --permission edit [--resume ID] PROMPT|-   (-: stdin)

It takes turns from the scenario named by $ORCHESTRATOR_FAKE_SCENARIO (the scripted model server's
format; a group member named by $ORCHESTRATOR_INSTANCE plays `<scenario>.<member>.yaml` when it
exists), keeping its place in a state file beside it (and each prompt it was given in
`<scenario>.prompts.jsonl`), until a text turn ends the step. Without a scenario it edits
`orchestrator-fake.txt` (edit mode) or approves (read-only). It prints one JSON object per line, read
by orchestrator/adapters/fake.py.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.testing.scenario import Scenario, Turn

# Without a scenario (the demo, the benchmarks' stand-ins) the agent imports nothing of pydantic or of
# the orchestrator: a step's agent is a fresh Python each time, and its start-up is on every step's
# critical path (about 0.1 s of CPU for the scenario's models and the process helpers).
_DEFAULT_USAGE = {"input_tokens": 123, "output_tokens": 7, "model": "scripted-model"}  # Scenario()'s
_APPROVE = 'No issues found.\n```json\n{"verdict": "approve", "findings": []}\n```'

_ERROR_KIND = {401: "auth", 403: "auth", 429: "rate_limit"}


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _Cursor:
    """The scenario position shared by every fake-agent process of a run (a locked state file)."""

    def __init__(self, scenario_path: Path) -> None:
        self.path = scenario_path.with_name(scenario_path.name + ".state")

    def take(self, scenario: Scenario) -> Turn | None:
        with open(self.path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            raw = fh.read().strip()
            index, used = (int(x) for x in raw.split(",")) if raw else (0, 0)
            if index >= len(scenario.turns):
                return None
            turn = scenario.turns[index]
            used += 1
            if turn.times != "always" and used >= turn.times:
                index, used = index + 1, 0
            fh.seek(0)
            fh.truncate()
            fh.write(f"{index},{used}")
            return turn


def play_default(permission: str, prompt: str) -> str:
    """The step without a scenario: a review approves; any other step appends a line to
    orchestrator-fake.txt. The same events as the scenario turns [write_file, text "done"] would give.
    Returns the step's final text."""
    if permission == "read_only":
        emit({"type": "usage", **_DEFAULT_USAGE})
        emit({"type": "message", "text": _APPROVE})
        return _APPROVE
    path = "orchestrator-fake.txt"
    line = f"fake agent step {uuid.uuid4().hex[:8]}: {prompt.splitlines()[0][:60] if prompt else ''}\n"
    existing = Path(path).read_text(encoding="utf-8") if Path(path).exists() else ""
    call_id = uuid.uuid4().hex[:12]
    emit({"type": "usage", **_DEFAULT_USAGE})
    emit({"type": "tool", "id": call_id, "action": "file_edit", "path": path, "status": "started"})
    Path(path).write_text(existing + line, encoding="utf-8")
    emit({"type": "tool", "id": call_id, "action": "file_edit", "path": path, "status": "succeeded"})
    emit({"type": "usage", **_DEFAULT_USAGE})
    emit({"type": "message", "text": "done"})
    return "done"


def play(turn: Turn, permission: str, scenario: Scenario) -> bool:
    """Play one turn; True when the step is over."""
    from orchestrator.testing.scenario import EditFile, Hang, HttpError, Shell, Text, WriteFile

    emit(
        {
            "type": "usage",
            "input_tokens": scenario.input_tokens,
            "output_tokens": scenario.output_tokens,
            "model": scenario.model,
        }
    )
    if isinstance(turn, Text):
        emit({"type": "message", "text": turn.text})
        return True
    if isinstance(turn, HttpError):
        kind = _ERROR_KIND.get(turn.status, "other")
        emit(
            {
                "type": "error",
                "kind": kind,
                "message": f"API error {turn.status}: {turn.message}",
                "retry_after_s": turn.retry_after,
            }
        )
        sys.exit(1)
    if isinstance(turn, Hang):
        time.sleep(turn.seconds if turn.seconds is not None else 10**6)
        return False
    call_id = uuid.uuid4().hex[:12]
    if isinstance(turn, WriteFile | EditFile):
        emit({"type": "tool", "id": call_id, "action": "file_edit", "path": turn.path, "status": "started"})
        if permission == "read_only":
            emit(
                {"type": "tool", "id": call_id, "action": "file_edit", "path": turn.path, "status": "refused"}
            )
            return False
        target = Path(turn.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(turn, WriteFile):
            target.write_text(turn.content, encoding="utf-8")
            ok = True
        else:
            text = target.read_text(encoding="utf-8") if target.exists() else ""
            ok = turn.old in text
            if ok:
                target.write_text(text.replace(turn.old, turn.new, 1), encoding="utf-8")
        status = "succeeded" if ok else "failed"
        emit({"type": "tool", "id": call_id, "action": "file_edit", "path": turn.path, "status": status})
        return False
    assert isinstance(turn, Shell)
    emit(
        {"type": "tool", "id": call_id, "action": "command_run", "command": turn.command, "status": "started"}
    )
    if permission == "read_only":
        emit(
            {
                "type": "tool",
                "id": call_id,
                "action": "command_run",
                "command": turn.command,
                "status": "refused",
            }
        )
        return False
    from orchestrator.proc import run_command

    # The fake agent stands in for a CLI's own shell tool, which runs commands through a shell.
    done = run_command(["/bin/sh", "-c", turn.command], Path.cwd(), env=dict(os.environ), timeout_s=600)
    emit(
        {
            "type": "tool",
            "id": call_id,
            "action": "command_run",
            "command": turn.command,
            "status": "succeeded" if done.returncode == 0 else "failed",
            "detail": done.stdout[-2000:],
        }
    )
    return False


def _member_scenario(path: Path, instance: str | None) -> Path:
    """A member of a group (an attempt, a reviewer: $ORCHESTRATOR_INSTANCE, e.g. "fake-2") plays
    `<scenario>.<member>.yaml` beside the scenario when there is one, with a cursor of its own, so that
    members running at once each follow their own script."""
    if instance:
        own = path.with_name(f"{path.stem}.{instance}{path.suffix}")
        if own.is_file():
            return own
    return path


def _note_prompt(scenario_path: Path, prompt: str) -> None:
    """Each prompt the scenario's agents were given, one JSON line each in `<scenario>.prompts.jsonl`
    beside its state file: what tests read to see what a step asked (a follow-up's text, findings)."""
    line = json.dumps({"instance": os.environ.get("ORCHESTRATOR_INSTANCE", ""), "prompt": prompt})
    try:
        with open(
            scenario_path.with_name(scenario_path.name + ".prompts.jsonl"), "a", encoding="utf-8"
        ) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line + "\n")
    except OSError:
        pass  # a scenario folder it may not write (a sandbox without it): the step goes on


def play_scenario(scenario_file: Path, permission: str, prompt: str) -> str:
    """Turns from the scenario until one ends the step; returns the step's final text."""
    from orchestrator.testing.scenario import Text, load_scenario

    path = _member_scenario(scenario_file, os.environ.get("ORCHESTRATOR_INSTANCE"))
    scenario = load_scenario(path)
    cursor = _Cursor(path)
    _note_prompt(path, prompt)
    for _ in range(1000):
        turn = cursor.take(scenario)
        if turn is None:
            return "(the scenario has no more turns)"
        if play(turn, permission, scenario):
            return turn.text if isinstance(turn, Text) else ""
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake-agent")
    parser.add_argument("--permission", default="edit", choices=["edit", "read_only", "bypass"])
    parser.add_argument("--resume", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("prompt", nargs="?", default="")
    args = parser.parse_args(argv)
    if args.prompt == "-":
        args.prompt = sys.stdin.read()
    session_id = args.resume or str(uuid.uuid4())
    emit({"type": "session", "session_id": session_id, "model": args.model or "scripted-model"})
    scenario_file = os.environ.get("ORCHESTRATOR_FAKE_SCENARIO")
    if scenario_file:
        final_text = play_scenario(Path(scenario_file), args.permission, args.prompt)
    else:
        final_text = play_default(args.permission, args.prompt)
    emit({"type": "result", "success": True, "text": final_text, "session_id": session_id})
    return 0


if __name__ == "__main__":
    sys.exit(main())
