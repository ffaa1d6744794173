"""Ordered delivery: each notifier gets the events of one task in the order they happened.

A real SQLite outbox, the real dispatcher and a real HTTP receiver on 127.0.0.1 that fails
chosen events: a later event of a task waits while an earlier one (same task, same notifier)
is pending or retrying; other tasks and other notifiers are not held up; a dead event releases
the ones after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
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
    task_event,
)
from bulkwatch.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from bulkwatch.store.base import DeliveryStatus
from bulkwatch.store.sqlite.migrations import MIGRATIONS
from bulkwatch.store.sqlite.store import SqliteStore
from bulkwatch.telemetry.metrics import Metrics
from support import write_events

RETRY = RetrySettings(initial=0.05, max_delay=0.1, max_attempts=10, max_age=3600.0)
DELIVERY = DeliverySettings(concurrency=8, batch=50, idle_interval=0.05)
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
STEPS = (
    (EventType.TASK_CREATED, TaskStatus.CREATED, None),
    (EventType.TASK_RUNNING, TaskStatus.RUNNING, TaskStatus.CREATED),
    (EventType.TASK_COMPLETED, TaskStatus.COMPLETED, TaskStatus.RUNNING),
)


def _event(task_id: str, step: int) -> Event:
    event_type, status, previous = STEPS[step]
    at = T0 - timedelta(seconds=10 - step)
    snapshot = TaskSnapshot(
        platform=Platform.SHOPLAZZA,
        store="lazza-main",
        task_id=task_id,
        operation_type="DATA_QUERY",
        status=status,
        raw_status=step,
        observed_at=at,
    )
    return task_event(event_type, snapshot, seq=step + 1, previous=previous, now=at)


@dataclass
class Receiver:
    """Answers each (path, event id) from `answers` (a list of statuses, used up in order),
    204 otherwise; `accepted` holds (path, subject, type) of every 2xx, in arrival order."""

    answers: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    accepted: list[tuple[str, str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        # Give the other sends of the batch time to arrive first, as a slow receiver does.
        await asyncio.sleep(0.01)
        statuses = self.answers.get((request.path, event["id"]))
        status = statuses.pop(0) if statuses else 204
        if status < 300:
            self.accepted.append((request.path, event["subject"], event["type"]))
        return web.Response(status=status)

    def order(self, path: str, subject: str) -> list[str]:
        return [t.rsplit(".", 1)[1] for p, s, t in self.accepted if (p, s) == (path, subject)]


@asynccontextmanager
async def running(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/{name}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def _running_clock() -> Callable[[], datetime]:
    """The test's own clock: T0 when called first, then moving with real time."""
    started = time.monotonic()
    return lambda: T0 + timedelta(seconds=time.monotonic() - started)


async def test_each_notifier_gets_the_events_of_a_task_in_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    a = [_event("a", i) for i in range(3)]
    b = [_event("b", i) for i in range(3)]
    c = [_event("c", i) for i in range(3)]
    # Interleaved as a busy store's polls write them: a1 b1 c1 a2 b2 c2 a3 b3 c3.
    await write_events(
        store, [e for trio in zip(a, b, c, strict=True) for e in trio], ["hook", "other"], "t"
    )
    receiver = Receiver(
        {
            ("/hook", a[0].id): [503, 503, 503],  # retried three times: a2 and a3 wait
            ("/hook", c[0].id): [410],  # dead at once: c2 and c3 go on without it
        }
    )
    async with running(receiver), aiohttp.ClientSession() as session:
        notifiers = {
            name: WebhookNotifier(
                WebhookNotifierConfig(name=name, url=f"{receiver.url}/{name}"), session
            )
            for name in ("hook", "other")
        }
        dispatcher = Dispatcher(
            store.outbox,
            notifiers,
            RETRY,
            DELIVERY,
            Metrics(CollectorRegistry()),
            clock=_running_clock(),
            rng=random.Random(1),
        )
        run = asyncio.create_task(dispatcher.run())
        try:
            for _ in range(400):  # 20 s
                if not await store.outbox.list_deliveries(DeliveryStatus.PENDING):
                    break
                await asyncio.sleep(0.05)
        finally:
            await dispatcher.drain(5)
            await run
    dead = await store.outbox.list_deliveries(DeliveryStatus.DEAD)
    await store.close()
    assert [(d.notifier, d.event_id) for d in dead] == [("hook", c[0].id)]
    everything = ["created", "running", "completed"]
    assert receiver.order("/hook", "lazza-main/a") == everything
    assert receiver.order("/hook", "lazza-main/b") == everything
    assert receiver.order("/hook", "lazza-main/c") == ["running", "completed"]
    for task in "abc":
        assert receiver.order("/other", f"lazza-main/{task}") == everything
    # Nobody else waited for hook's retries of a's first event.
    first_a = receiver.accepted.index(("/hook", "lazza-main/a", EventType.TASK_CREATED))
    before = receiver.accepted[:first_a]
    assert ("/hook", "lazza-main/b", EventType.TASK_COMPLETED) in before
    assert ("/hook", "lazza-main/c", EventType.TASK_COMPLETED) in before
    assert ("/other", "lazza-main/a", EventType.TASK_COMPLETED) in before


async def test_rows_pending_from_before_the_upgrade_are_ordered_too(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for migration in MIGRATIONS[:3]:  # a database of the version before ordered delivery
            migration(conn)
        conn.execute("PRAGMA user_version = 3")
        for i, event in enumerate([_event("a", 0), _event("a", 1), _event("b", 0)]):
            at = event.time.isoformat()
            conn.execute(
                "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, "
                "attempts, created_at, next_attempt_at) VALUES (?, 'hook', ?, ?, ?, ?, 0, ?, ?)",
                (event.id, event.type, event.store, encode_cloudevent(event, "t"),
                 "pending" if i else "dead", at, at),
            )  # fmt: skip
        conn.execute(
            "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, "
            "attempts, created_at, next_attempt_at) VALUES ('x', 'hook', 't', 's', "
            "X'00ff', 'pending', 0, '2026-11-23T09:00:00+00:00', '2026-11-23T09:00:00+00:00')"
        )  # a body that is not JSON: no subject, never held
    store = SqliteStore(db)
    await store.open()
    try:
        # a's first event is dead, so its second is due; requeued, it holds the second again.
        due = await store.outbox.due_deliveries(T0, 10)
        assert sorted(d.event_id for d in due) == sorted(
            ["x", _event("a", 1).id, _event("b", 0).id]
        )
        await store.outbox.requeue_dead(T0)
        due = await store.outbox.due_deliveries(T0, 10)
        assert sorted(d.event_id for d in due) == sorted(
            ["x", _event("a", 0).id, _event("b", 0).id]
        )
    finally:
        await store.close()
