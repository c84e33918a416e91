"""Logging set-up (structlog over the standard library), with secrets masked before anything is written.

`configure_logging` routes structlog loggers and plain `logging` loggers (ours and third parties') through
one handler: stderr, or a file. stdout is left alone: it carries `--json` reports. Human-readable lines
when stderr is a terminal, JSON lines otherwise (or when asked).

`run_log` adds, for the time a run executes, its own `runs/<run-id>/log.jsonl` under the state home: every
record bound to that run (structlog context `run_id`), at info and above, whatever the console shows.
`event_logger` turns a run's events into log lines (run, step, commit, gate, fallback, retry, cancel).

Secrets are masked by orchestrator.secrets' masker (re-exported here as `SecretMasker`): the process's
masker by default, which learns each run's secrets as the run starts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# First: structlog imported without the rich modules it would import for nothing (see there).
from orchestrator.logs_structlog import structlog

# The masker lives in orchestrator.secrets; these names stay importable from here.
from orchestrator.secrets import MASK as MASK
from orchestrator.secrets import MIN_SECRET_LENGTH as MIN_SECRET_LENGTH
from orchestrator.secrets import SECRET_NAME_SUFFIXES as SECRET_NAME_SUFFIXES
from orchestrator.secrets import SECRET_PATTERNS as SECRET_PATTERNS
from orchestrator.secrets import SecretMasker as SecretMasker
from orchestrator.secrets import process_masker
from orchestrator.secrets import secret_values as secret_values

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger


class MaskSecrets:
    """A structlog processor: masks every string value of the event dict (the message included)."""

    def __init__(self, masker: SecretMasker) -> None:
        self._masker = masker

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in event_dict.items():
            if isinstance(value, str | dict | list | tuple):
                event_dict[key] = self._masker.mask_value(value)
            elif value is not None and not isinstance(value, bool | int | float):
                # Any other object (an exception, a path, a custom class) is rendered by repr() later,
                # by whichever handler gets the record: render it here, masked.
                event_dict[key] = self._masker.mask(repr(value))
        return event_dict


class _MaskedRenderer:
    """Runs the final renderer, then masks its output once more, in case rendering made text out of
    something the event dict did not hold as text (belt and braces: MaskSecrets ran before)."""

    def __init__(self, renderer: Processor, masker: SecretMasker) -> None:
        self._renderer = renderer
        self._masker = masker

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        rendered = self._renderer(logger, method_name, event_dict)
        if not isinstance(rendered, str):
            raise TypeError("the renderer must return text")
        return self._masker.mask(rendered)


class _BoundLogger(structlog.stdlib.BoundLogger):
    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        # Not logging.Logger.exception: that attaches the raw traceback to the record, and a handler
        # other than ours would print it unmasked. format_exc_info renders (and we mask) it instead.
        return self._proxy_to_logger("error", event, *args, **kw)


# The handler configure_logging installed last, so a second call replaces it instead of adding one.
_HANDLER_NAME = "orchestrator"

# The dashboard's HTTP server (werkzeug) logs each request line itself, in colour, on a stream handler of
# its own unless a handler takes its level: through ours instead, at the configured level, plain text,
# with secret query values masked (the dashboard's sign-in URL carries its token, maybe a fresh one the
# masker cannot know).
SERVER_LOGGER = "werkzeug"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SECRET_QUERY = re.compile(r"([?&](?:token|access_token|key|api_key|secret|password)=)[^&\s\"]+", re.I)


def _request_text(text: str) -> str:
    return _SECRET_QUERY.sub(r"\1" + MASK, _ANSI.sub("", text))


class _RequestLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _request_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_request_text(a) if isinstance(a, str) else a for a in record.args)
        return True


def _route_server_log(level: int) -> None:
    server = logging.getLogger(SERVER_LOGGER)
    server.setLevel(level)  # our handler's level: werkzeug then adds no handler of its own
    for handler in [h for h in server.handlers if type(h).__module__.startswith("werkzeug")]:
        server.removeHandler(handler)
    if not any(isinstance(f, _RequestLines) for f in server.filters):
        server.addFilter(_RequestLines())


def _level_number(level: int | str) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r} (allowed: debug, info, warning, error, critical)")
    return number


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _formatter(masker: SecretMasker, *, json: bool) -> logging.Formatter:
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            MaskSecrets(masker),
            _MaskedRenderer(renderer, masker),
        ],
    )


# Per-run logs keep info and above whatever the console's level, so records at info must get that far.
RUN_LOG_LEVEL = logging.INFO


def configure_logging(
    level: int | str = "warning",
    json: bool | None = None,
    file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> None:
    """Send every log record (structlog and stdlib) at `level` or above to `file` (appended), or to
    stderr when no file is given; as JSON lines or as plain text (`json=None`: plain text on a
    terminal, JSON lines otherwise); with secrets masked.

    `env` is where secret values are read from (default: os.environ, read only). Calling it again
    replaces the previous set-up."""
    masker = process_masker() if env is None else SecretMasker(env)
    number = _level_number(level)
    if json is None:
        json = file is not None or not _is_tty(sys.stderr)
    shared = _shared_processors()
    formatter = _formatter(masker, json=json)
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8", delay=True)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.setLevel(number)

    root = logging.getLogger()
    _remove_our_handlers(root)
    root.addHandler(handler)
    root.setLevel(min(number, RUN_LOG_LEVEL))
    _route_server_log(number)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.UnicodeDecoder(),
            # Masked here already, not only in our handler's formatter: any other handler on the root
            # logger (a library's, pytest's) gets the record too, and must not see a secret either.
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            MaskSecrets(masker),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=_BoundLogger,
        # Not cached: a later configure_logging (tests, `--log-file`) must reach loggers made before it.
        cache_logger_on_first_use=False,
    )


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def _remove_our_handlers(root: logging.Logger) -> None:
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()


def reset_logging() -> None:
    """Undoes configure_logging: removes (and closes) its handler and restores structlog's defaults."""
    _remove_our_handlers(logging.getLogger())
    server = logging.getLogger(SERVER_LOGGER)
    server.setLevel(logging.NOTSET)
    for found in [f for f in server.filters if isinstance(f, _RequestLines)]:
        server.removeFilter(found)
    structlog.reset_defaults()


def get_logger(name: str = "orchestrator", **context: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**context) if context else logger


# --- one run's own log ------------------------------------------------------------------------------


class _ForRun(logging.Filter):
    """Lets through the records bound to one run (structlog's event dict, or a stdlib `extra`)."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self._run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        data = record.msg if isinstance(record.msg, dict) else record.__dict__
        return data.get("run_id") == self._run_id


@contextlib.contextmanager
def run_log(path: Path, run_id: str, *, masker: SecretMasker | None = None) -> Iterator[Path]:
    """While inside: records bound to `run_id` at info and above go to `path` as JSON lines (appended,
    so a resumed run adds to its log), and everything logged in this context is bound to the run."""
    if not structlog.is_configured():
        configure_logging()  # unconfigured structlog would print to stdout
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(_formatter(masker or process_masker(), json=True))
    handler.setLevel(RUN_LOG_LEVEL)
    handler.addFilter(_ForRun(run_id))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > RUN_LOG_LEVEL or root.level == logging.NOTSET:
        root.setLevel(RUN_LOG_LEVEL)
    try:
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            yield path
    finally:
        root.removeHandler(handler)
        handler.close()


def event_logger(name: str = "orchestrator.run") -> Any:
    """A run-bus subscriber that logs what happens in a run, each line bound with run_id, step_id and
    agent. All at info (agent chatter at debug): the console renderer already shows people a run's
    failures and warnings, so at the default level (warning) these lines would only repeat it on
    stderr; files and the per-run log (info) get them all, with the status in the line."""
    from orchestrator.events import (
        AgentActivity,
        AgentErrorEvent,
        GateFinished,
        Notice,
        RunEvent,
        RunFinished,
        RunStarted,
        SessionStarted,
        StepFinished,
        StepStarted,
    )

    log = get_logger(name)
    # run id -> (step id, agent) of the step under way: a notice (a fallback after a failed attempt,
    # a retry) during a step is that step's. One logger per run's bus, so this stays small.
    open_steps: dict[str, tuple[str, str]] = {}

    def on_event(event: RunEvent) -> None:
        if isinstance(event, StepStarted):
            open_steps[event.run_id] = (event.step_id, event.agent)
        elif isinstance(event, StepFinished | RunFinished):
            open_steps.pop(event.run_id, None)
        if isinstance(event, RunStarted):
            log.info("run started", run_id=event.run_id, workflow=event.workflow, branch=event.branch)
        elif isinstance(event, StepStarted):
            log.info(
                "step started",
                run_id=event.run_id,
                step_id=event.step_id,
                agent=event.agent,
                task=event.task,
                iteration=event.iteration,
            )
        elif isinstance(event, StepFinished):
            bound = log.bind(run_id=event.run_id, step_id=event.step_id, agent=event.agent)
            if event.commit:
                bound.info("commit", commit=event.commit, files=len(event.files_changed))
            bound.info("step finished", status=event.status, error_kind=event.error_kind, error=event.error)
        elif isinstance(event, GateFinished):
            log.info(
                "gate passed" if event.passed else "gate failed",
                run_id=event.run_id,
                step_id=event.step_id,
                agent="gate",
                exit_code=event.exit_code,
            )
        elif isinstance(event, Notice):
            message = {"fallback": "fallback", "retry": "retry"}.get(event.kind or "", "notice")
            step = open_steps.get(event.run_id or "")
            # Only when known: a None here would hide a step_id bound in the context.
            known = {"step_id": step[0]} if step else {}
            log.info(
                message,
                run_id=event.run_id,
                **known,
                agent=event.agent or (step[1] if step else None),
                reason=event.reason,
                text=event.text,
                notice_level=event.level,
            )
        elif isinstance(event, RunFinished):
            log.info(
                "run cancelled" if event.status == "cancelled" else "run finished",
                run_id=event.run_id,
                status=event.status,
                stop_reason=event.stop_reason,
            )
        elif isinstance(event, AgentActivity):
            inner = event.event
            bound = log.bind(run_id=event.run_id, step_id=event.step_id, agent=event.agent)
            if isinstance(inner, AgentErrorEvent):
                bound.info("agent error", kind=inner.kind, message=inner.message)
            elif isinstance(inner, SessionStarted):
                bound.info("agent session", session_id=inner.session_id, model=inner.model)
            else:
                bound.debug("agent event", type=inner.type)

    return on_event
