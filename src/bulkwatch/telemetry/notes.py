"""Endpoint notes in the metrics and the log: a gauge per note, one warning per store and note.

`bulkwatch_list_truncated{platform,store}` is 1 while a store's list is longer than its polls
read; `bulkwatch_endpoint_unverified{platform,store,endpoint}` 1 while an endpoint answers 404
and has never shown a task. Each is logged once per store (again only after it cleared).
"""

from __future__ import annotations

import structlog

from bulkwatch.model import EndpointKey
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["NoteStats"]

log = structlog.get_logger("bulkwatch")


class NoteStats:
    """Reports the notes of each judged poll; warns when one appears."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._warned: set[tuple[str, str]] = set()

    def observed(self, key: EndpointKey, notes: dict[str, str]) -> None:
        platform = key.platform.value
        if "list" in notes and key.platform.value == "shoplazza":
            gauge = self._metrics.list_truncated.labels(platform, key.store)
            gauge.set(1 if notes["list"] else 0)
        if "no_task" in notes and key.platform.value == "shopline":
            gauge = self._metrics.endpoint_unverified.labels(platform, key.store, key.endpoint)
            gauge.set(1 if notes["no_task"] else 0)
        for name, text in notes.items():
            flag = (key.store, name)
            if text and flag not in self._warned:
                self._warned.add(flag)
                log.warning("endpoint note", note=name, detail=text)
            elif not text:
                self._warned.discard(flag)
