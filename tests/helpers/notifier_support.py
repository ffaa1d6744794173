"""Helpers for the notifier tests: sample events, and the real dispatcher over real SQLite.

`delivery_harness` writes events to the outbox the way a poll does and runs the `Dispatcher`
with a frozen clock, so each notifier type can prove that its failures are retried,
dead-lettered and counted exactly like the webhook's.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bulkwatch.config import DeliverySettings, RetrySettings
from bulkwatch.delivery.dispatcher import Dispatcher
from bulkwatch.model import (
    Event,
    EventType,
    Platform,
    TaskSnapshot,
    TaskStatus,
    encode_cloudevent,
    store_event,
    task_event,
)
from bulkwatch.notifiers.base import Notifier, OutgoingEvent
from bulkwatch.store.base import Delivery, DeliveryStatus
from bulkwatch.store.sqlite.store import SqliteStore
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.support import write_events

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
RESULT_URL = "https://files.example.com/exports/d6ca13c4.csv?X-Sig=abc&Expires=1795000000"
INSTANCE = "test-1"


def task_change(
    status: TaskStatus = TaskStatus.COMPLETED,
    previous: TaskStatus | None = TaskStatus.RUNNING,
    *,
    event_type: str | None = None,
    extra: dict[str, Any] | None = None,
    **fields: Any,
) -> Event:
    """A task event of lazza-main/d6ca13c4 (completed, with a result URL, by default)."""
    values: dict[str, Any] = {
        "platform": Platform.SHOPLAZZA,
        "store": "lazza-main",
        "task_id": "d6ca13c4",
        "operation_type": "DATA_QUERY",
        "status": status,
        "raw_status": 2,
        "observed_at": NOW,
        "url": RESULT_URL if status is TaskStatus.COMPLETED else None,
        "completed_count": 1200 if status is TaskStatus.COMPLETED else None,
    }
    values.update(fields)
    snapshot = TaskSnapshot(**values)
    kind = EventType(event_type) if event_type else EventType.for_status(status)
    return task_event(kind, snapshot, seq=1, previous=previous, now=NOW, extra=extra)


def store_change(down: bool = True, reason: str = "HTTP 401: invalid token") -> Event:
    """A store.down (or store.up) event of lazza-main."""
    return store_event(
        EventType.STORE_DOWN if down else EventType.STORE_UP,
        store="lazza-main",
        platform=Platform.SHOPLAZZA,
        outage=1,
        now=NOW,
        reason=reason,
    )


def outgoing(event: Event | None = None, attempt: int = 1) -> OutgoingEvent:
    """An event as the dispatcher hands it to a notifier."""
    event = event or task_change()
    body = encode_cloudevent(event, INSTANCE)
    return OutgoingEvent(
        id=event.id,
        type=event.type,
        store=event.store,
        body=body,
        cloudevent=json.loads(body),
        attempt=attempt,
    )


@dataclass
class Harness:
    """The real SQLite store and metrics, a frozen clock, and a dispatcher factory."""

    store: SqliteStore
    clock: ManualClock = field(default_factory=ManualClock)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    retry: RetrySettings = field(
        default_factory=lambda: RetrySettings(initial=1.0, max_delay=8.0, max_attempts=3)
    )

    async def enqueue(self, event: Event, notifier: str) -> None:
        """Write one outbox row for `notifier`, in the same call a poll uses."""
        await write_events(self.store, [event], [notifier], INSTANCE)

    def dispatcher(self, notifier: Notifier) -> Dispatcher:
        return Dispatcher(
            self.store.outbox,
            {notifier.name: notifier},
            self.retry,
            DeliverySettings(concurrency=4, batch=50, idle_interval=60.0),
            Metrics(self.registry),
            clock=self.clock,
            rng=random.Random(7),
        )

    async def only(self, status: DeliveryStatus) -> Delivery:
        (row,) = await self.store.outbox.list_deliveries(status)
        return row

    def count(self, notifier: str, outcome: str) -> float:
        value = self.registry.get_sample_value(
            "bulkwatch_deliveries_total", {"notifier": notifier, "outcome": outcome}
        )
        return value or 0.0

    async def retry_then_deliver(self, dispatcher: Dispatcher) -> Delivery:
        """Run the first attempt (which must fail and be scheduled again), move the clock to
        the retry, run it (which must succeed); return the failed attempt's row."""
        assert await dispatcher.run_once() == 1
        failed = await self.only(DeliveryStatus.PENDING)
        assert failed.attempts == 1
        assert await dispatcher.run_once() == 0  # not due before its backoff
        self.clock.now = failed.next_attempt_at
        assert await dispatcher.run_once() == 1
        assert (await self.only(DeliveryStatus.DELIVERED)).attempts == 1
        return failed


@asynccontextmanager
async def delivery_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A `Harness` over a fresh SQLite file in `tmp_path`."""
    store = SqliteStore(tmp_path / "outbox.db")
    await store.open()
    try:
        yield Harness(store)
    finally:
        await store.close()
