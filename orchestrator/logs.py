"""Logging set-up (structlog over the standard library), with secrets masked before anything is written.

`configure_logging` routes structlog loggers and plain `logging` loggers (ours and third parties') through
one handler: stderr, or a file. stdout is left alone: it carries `--json` reports.

Secrets are masked by orchestrator.secrets' masker (re-exported here as `SecretMasker`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# The masker lives in orchestrator.secrets; these names stay importable from here.
from orchestrator.secrets import MASK as MASK
from orchestrator.secrets import MIN_SECRET_LENGTH as MIN_SECRET_LENGTH
from orchestrator.secrets import SECRET_NAME_SUFFIXES as SECRET_NAME_SUFFIXES
from orchestrator.secrets import SECRET_PATTERNS as SECRET_PATTERNS
from orchestrator.secrets import SecretMasker as SecretMasker
from orchestrator.secrets import process_masker
from orchestrator.secrets import secret_values as secret_values


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


def configure_logging(
    level: int | str = "warning",
    json: bool = False,
    file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> None:
    """Send every log record (structlog and stdlib) at `level` or above to `file` (appended), or to
    stderr when no file is given; as JSON lines or as plain text; with secrets masked.

    `env` is where secret values are read from (default: the process's masker, which reads os.environ
    and learns each run's secrets as the run starts). Calling it again
    replaces the previous set-up."""
    masker = process_masker() if env is None else SecretMasker(env)
    number = _level_number(level)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            MaskSecrets(masker),
            _MaskedRenderer(renderer, masker),
        ],
    )
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
    root.setLevel(number)

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
