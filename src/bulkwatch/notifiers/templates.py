"""Message text for human channels (Slack, e-mail, Apprise): `string.Template` placeholders.

A template is plain text with `$name` or `${name}` placeholders (`$$` is a literal `$`). Every
placeholder is a string; a value the event does not have is empty. Templates are checked when
the config is loaded, so a typo in a placeholder is a config error, not a failed delivery.

Besides the event's own fields, a few placeholders are composed for reading:
`$title` ("Task completed", "Store down"), `$headline` (one sentence naming store, task and
change), `$transition` ("RUNNING → COMPLETED") and `$details` (one "Label: value" line per field
the event has). Events sent by `bulkwatch notify-test` have "[test] " before their headline.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator

from bulkwatch.notifiers.base import OutgoingEvent
from bulkwatch.notifiers.log import format_line

__all__ = [
    "PLACEHOLDERS",
    "MessageTemplate",
    "check_template",
    "placeholders",
    "render",
    "text",
]

_TASK = "bulkwatch.task."
_STORE = "bulkwatch.store."

# Fields of the event's `data`, offered under their own names.
_DATA_FIELDS = (
    "store",
    "platform",
    "task_id",
    "operation_type",
    "status",
    "previous_status",
    "url",
    "partial_data_url",
    "error_code",
    "reason",
    "completed_count",
    "created_at",
    "completed_at",
    "expires_at",
    "observed_at",
    "superseded_by",
)
_COMPOSED = ("title", "headline", "transition", "error", "details", "summary")
_ENVELOPE = ("type", "event", "event_id", "source", "subject", "time", "attempt")

PLACEHOLDERS: tuple[str, ...] = (*_ENVELOPE, *_DATA_FIELDS, *_COMPOSED)
"""Every name a template may use."""

# Labels of the `$details` lines, in the order they are listed.
_DETAIL_LABELS = (
    ("store", "Store"),
    ("platform", "Platform"),
    ("task_id", "Task"),
    ("operation_type", "Operation"),
    ("transition", "Status"),
    ("completed_count", "Rows"),
    ("error", "Error"),
    ("url", "Result file"),
    ("partial_data_url", "Partial data"),
    ("expires_at", "Expires at"),
    ("superseded_by", "Superseded by"),
    ("observed_at", "Observed at"),
)


def check_template(value: str) -> str:
    """Validate a template: correct `$` syntax and only known placeholders."""
    template = string.Template(value)
    if not template.is_valid():
        raise ValueError("invalid template: use $name or ${name}, and $$ for a literal $")
    unknown = sorted(set(template.get_identifiers()) - set(PLACEHOLDERS))
    if unknown:
        names = ", ".join(f"${name}" for name in unknown)
        raise ValueError(f"unknown placeholder {names} (see docs/plugins.md for the list)")
    return value


MessageTemplate = Annotated[str, AfterValidator(check_template)]
"""A config field holding a template; validated when the config loads."""


def render(template: str, event: OutgoingEvent, escape: Callable[[str], str] | None = None) -> str:
    """Fill a (validated) template from an event; `escape` is applied to every value."""
    values = placeholders(event)
    if escape is not None:
        values = {name: escape(value) for name, value in values.items()}
    return string.Template(template).safe_substitute(values)


def placeholders(event: OutgoingEvent) -> dict[str, str]:
    """Every placeholder's value for one event, as text ("" when the event lacks it)."""
    raw = event.cloudevent.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    values = {name: text(data.get(name)) for name in _DATA_FIELDS}
    values["store"] = values["store"] or event.store
    values.update(
        type=event.type,
        event=event.type.removeprefix("bulkwatch."),
        event_id=event.id,
        source=text(event.cloudevent.get("source")),
        subject=text(event.cloudevent.get("subject")),
        time=text(event.cloudevent.get("time")),
        attempt=str(event.attempt),
    )
    status, previous = values["status"], values["previous_status"]
    values["transition"] = f"{previous} → {status}" if previous and status else status
    code, reason = values["error_code"], values["reason"]
    values["error"] = f"{code}: {reason}" if code and reason else code or reason
    values["title"] = _title(event.type)
    values["headline"] = ("[test] " if data.get("test") is True else "") + _headline(
        event.type, values
    )
    values["summary"] = format_line(event)
    if event.type.startswith(_STORE):
        # A store event's reason is why the store is down, not a task's error.
        labels: tuple[tuple[str, str], ...] = (
            ("store", "Store"),
            ("platform", "Platform"),
            ("reason", "Reason"),
        )
    else:
        labels = _DETAIL_LABELS
    details = [(label, values[name]) for name, label in labels if values[name]]
    values["details"] = "\n".join(f"{label}: {value}" for label, value in details)
    return values


def text(value: object) -> str:
    """A data value as placeholder text: None is empty, everything else its `str`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _title(event_type: str) -> str:
    special = {
        "bulkwatch.task.superseded": "Task superseded",
        "bulkwatch.task.stalled": "Task stalled",
        "bulkwatch.task.expiring": "Result expiring",
        "bulkwatch.store.down": "Store down",
        "bulkwatch.store.up": "Store up",
    }
    if event_type in special:
        return special[event_type]
    if event_type.startswith(_TASK):
        return "Task " + event_type.removeprefix(_TASK)
    return event_type


def _headline(event_type: str, v: Mapping[str, str]) -> str:
    store, task, status = v["store"], v["task_id"] or "?", v["status"] or "?"
    if event_type == "bulkwatch.store.down":
        return f"{store} is down: {v['reason']}" if v["reason"] else f"{store} is down"
    if event_type == "bulkwatch.store.up":
        return f"{store} is up again"
    if not event_type.startswith(_TASK):
        return f"{event_type} {v['subject'] or store}"
    kind = event_type.removeprefix(_TASK)
    if kind == "superseded":
        by = f" by task {v['superseded_by']}" if v["superseded_by"] else ""
        return f"{store}: task {task} ({status}) was replaced{by}"
    if kind == "stalled":
        return f"{store}: task {task} stalled in {status}"
    if kind == "expiring":
        when = f"at {v['expires_at']}" if v["expires_at"] else "soon"
        return f"{store}: the result of task {task} expires {when}"
    if v["previous_status"]:
        return f"{store}: task {task} {v['previous_status']} → {status}"
    return f"{store}: task {task} is {status}"
