"""Logging set-up (structlog over the standard library), with secrets masked before anything is written.

`configure_logging` routes structlog loggers and plain `logging` loggers (ours and third parties') through
one handler: stderr, or a file. stdout is left alone: it carries `--json` reports. Human-readable lines
when stderr is a terminal, JSON lines otherwise (or when asked).

`run_log` adds, for the time a run executes, its own `runs/<run-id>/log.jsonl` under the state home: every
record bound to that run (structlog context `run_id`), at info and above, whatever the console shows.
`event_logger` turns a run's events into log lines (run, step, commit, gate, fallback, retry, cancel).

`SecretMasker` is also used by the store, so secrets reach neither logs nor stored events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "***"

# Environment variables whose values are secrets, by the end of their name.
SECRET_NAME_SUFFIXES: tuple[str, ...] = ("KEY", "TOKEN", "SECRET", "PASSWORD")

# A value shorter than this is not masked by value: masking "1" or "true" everywhere would mangle logs,
# and such a value is no real credential.
MIN_SECRET_LENGTH = 6

# Strings that look like credentials wherever they come from (a key pasted into a task, a CLI echoing
# a header). Each keeps its recognizable prefix so a reader still sees what kind of thing was there.
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # OpenAI and Anthropic keys: sk-..., sk-proj-..., sk-ant-...
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}"), "sk-" + MASK),
    # GitHub tokens: ghp_ (classic), gho_, ghu_, ghs_, ghr_, and fine-grained github_pat_.
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{16,}"), "gh_" + MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{16,}"), "github_pat_" + MASK),
    # Google API keys (Gemini).
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), "AIza" + MASK),
    # Authorization headers: "Bearer <token>" in any case.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + MASK),
)


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of variables named like secrets, longest first (so a key that contains another is
    masked whole)."""
    values = {
        value
        for name, value in env.items()
        if name.upper().endswith(SECRET_NAME_SUFFIXES) and len(value) >= MIN_SECRET_LENGTH
    }
    return tuple(sorted(values, key=len, reverse=True))


class SecretMasker:
    """Replaces secrets in text: the values of secret-named variables of `env`, and credential-shaped
    strings. `env` is read once, when the masker is made; it is never written."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._values = secret_values(os.environ if env is None else env)

    def mask(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        for pattern, replacement in SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def mask_value(self, value: Any) -> Any:
        """Masks strings inside dicts, lists and tuples; other values are returned as they are."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {key: self.mask_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.mask_value(item) for item in value)
        return value


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
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
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
    masker = SecretMasker(env)
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
    handler.setFormatter(_formatter(masker or SecretMasker(), json=True))
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

    def on_event(event: RunEvent) -> None:
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
            log.info(
                message,
                run_id=event.run_id,
                agent=event.agent,
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
