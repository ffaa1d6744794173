"""structlog, configured once: JSON lines off a terminal, readable colour on one.

Records of the standard `logging` module (aiohttp, APScheduler, asyncio) go through the same
renderer to the same stream, so a JSON log stays one JSON object per line whoever wrote it.
bulkwatch's own records carry no logger name, so every module logs through the one
`structlog.get_logger("bulkwatch")`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

from bulkwatch.common.redact import redact

__all__ = ["configure_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# APScheduler logs "Running job" and "executed successfully" for every poll at INFO: at
# 10,000 stores that drowns everything else. Its warnings (missed runs) still come through.
_QUIET = {"apscheduler": logging.WARNING}
# Without local variables: the frames of a poll or a delivery hold tokens, secrets and
# Authorization headers, and a traceback must never carry them into the log.
_DICT_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def _redacting(renderer: structlog.types.Processor) -> structlog.types.Processor:
    """`renderer`, with every configured secret taken out of the line it renders (the
    traceback included), whoever logged it."""

    def render(logger: Any, method: str, event: structlog.types.EventDict) -> Any:
        line = renderer(logger, method, event)
        return redact(line) if isinstance(line, str) else line

    return render


class _Handler(logging.StreamHandler[TextIO]):
    """The one handler bulkwatch puts on the root logger (found again by its type)."""


def configure_logging(
    level: Literal["debug", "info", "warning", "error"] = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the standard library's logging for the process.

    `auto` picks the console renderer on a terminal and JSON lines otherwise; colours only
    on a terminal. Calling it again replaces the previous configuration.
    """
    out = stream if stream is not None else sys.stderr
    tty = out.isatty()
    use_console = fmt == "console" or (fmt == "auto" and tty)
    renderer: structlog.types.Processor = (
        # Plain tracebacks even where `rich` is installed: its tracebacks show local variables.
        structlog.dev.ConsoleRenderer(colors=tty, exception_formatter=structlog.dev.plain_traceback)
        if use_console
        else structlog.processors.JSONRenderer()
    )
    renderer = _redacting(renderer)
    # Tracebacks become a structured field in JSON; the console renderer prints them itself.
    tracebacks: list[structlog.types.Processor] = [] if use_console else [_DICT_TRACEBACKS]
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    threshold = _LEVELS[level]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            *tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tracebacks,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name, floor in _QUIET.items():
        logging.getLogger(name).setLevel(max(floor, threshold))
