"""The `log` notifier: writes each event to the structured log; it never fails.

`format: line` gives one readable line per event (what `bulkwatch demo` shows on the console);
`format: json` logs the whole CloudEvent for log pipelines that want the full payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import structlog

from bulkwatch.notifiers.base import NotifierConfig, NotifierType, OutgoingEvent

__all__ = ["TYPE", "LogNotifier", "LogNotifierConfig", "describe", "format_line"]

_logger = structlog.get_logger("bulkwatch")

_TASK_PREFIX = "bulkwatch.task."
_STORE_PREFIX = "bulkwatch.store."


class LogNotifierConfig(NotifierConfig):
    """Config of the `log` notifier."""

    type: Literal["log"] = "log"
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["line", "json"] = "line"


class LogNotifier:
    """Logs every event through structlog with the event's fields bound."""

    def __init__(self, config: LogNotifierConfig) -> None:
        self.name = config.name
        self._level = config.level
        self._format = config.format

    async def send(self, event: OutgoingEvent) -> None:
        """Log the event. Nothing here raises: a log line is never worth a retry."""
        fields: dict[str, Any] = {
            "notifier": self.name,
            "event_id": event.id,
            "event_type": event.type,
            "store": event.store,
            "attempt": event.attempt,
        }
        subject = event.cloudevent.get("subject")
        if isinstance(subject, str):
            fields["subject"] = subject
        method = getattr(_logger, self._level)
        if self._format == "json":
            method(event.type, cloudevent=dict(event.cloudevent), **fields)
        else:
            # The line already names store, task and change; the id is what a reader greps.
            method(format_line(event), event_id=event.id)

    async def aclose(self) -> None:
        """Nothing to release."""


def format_line(event: OutgoingEvent) -> str:
    """One human line for an event, e.g. `lazza-main/d6ca13c4 RUNNING → COMPLETED  url=…`.

    Tolerates any body shape: a malformed event still gets a line, never an exception.
    """
    raw = event.cloudevent.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return describe(event.type, _text(event.cloudevent.get("subject")), event.store, data)


def describe(event_type: str, subject: str | None, store: str, data: Mapping[str, Any]) -> str:
    """The line of `format_line` from an event's parts: also what the daemon logs for each
    event it records (`log.events`)."""
    subject = subject or store
    if event_type.startswith(_STORE_PREFIX):
        store = _text(data.get("store")) or store
        state = event_type.removeprefix(_STORE_PREFIX).upper()
        reason = _text(data.get("reason"))
        return f"store {store} {state}: {reason}" if reason else f"store {store} {state}"

    if not event_type.startswith(_TASK_PREFIX):
        return f"{event_type} {subject}"

    kind = event_type.removeprefix(_TASK_PREFIX)
    status = _text(data.get("status")) or "?"
    previous = _text(data.get("previous_status"))
    if kind == "superseded":
        by = _text(data.get("superseded_by"))
        head = f"{subject} {status} superseded by {by}" if by else f"{subject} {status} superseded"
    elif kind == "stalled":
        head = f"{subject} {status} stalled"
    elif kind == "expiring":
        head = f"{subject} {status} expiring at {_text(data.get('expires_at')) or '?'}"
    elif previous:
        head = f"{subject} {previous} → {status}"
    else:
        head = f"{subject} → {status}"

    url, partial = _text(data.get("url")), _text(data.get("partial_data_url"))
    details = [
        f"{label}={value}"
        for label, value in (
            ("url", url),
            # Shopline repeats the result URL as partial_data_url once COMPLETED: once is enough.
            ("partial_data_url", partial if partial != url else None),
            ("error", _error(data)),
        )
        if value
    ]
    return "  ".join([head, *details])


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _error(data: Mapping[str, Any]) -> str | None:
    code, reason = _text(data.get("error_code")), _text(data.get("reason"))
    if code and reason:
        return f"{code}: {reason}"
    return code or reason


TYPE = NotifierType("log", LogNotifierConfig, lambda config, _: LogNotifier(config))
