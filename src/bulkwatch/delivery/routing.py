"""From events to outbox rows: which notifiers want each event, and the body they are sent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bulkwatch.model import Event, encode_cloudevent
from bulkwatch.notifiers.base import NotifierConfig
from bulkwatch.store.base import OutboxRow

__all__ = ["Router"]


class Router:
    """Routes events to the notifiers whose `events` and `stores` globs they match."""

    def __init__(self, notifiers: Sequence[NotifierConfig], instance: str) -> None:
        self._notifiers = tuple(notifiers)
        self._instance = instance

    def targets(self, event: Event) -> list[str]:
        """The names of the notifiers that want `event`."""
        return [n.name for n in self._notifiers if n.matches(event.type, event.store)]

    def rows(self, events: Iterable[Event]) -> list[OutboxRow]:
        """One row per (event, notifier that wants it); an event nobody wants is not stored."""
        rows: list[OutboxRow] = []
        for event in events:
            names = self.targets(event)
            if not names:
                continue
            body = encode_cloudevent(event, self._instance)
            rows.extend(
                OutboxRow(event.id, name, event.type, event.store, body, event.time, event.subject)
                for name in names
            )
        return rows
