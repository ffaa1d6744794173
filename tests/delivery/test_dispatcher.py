"""The dispatcher over the real SQLite store and a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bulkwatch.config import DeliverySettings, RetrySettings
from bulkwatch.delivery.dispatcher import Dispatcher, backoff_delay
from bulkwatch.model import (
    EndpointKey,
    Event,
    Platform,
    encode_cloudevent,
)
from bulkwatch.notifiers.base import Notifier, OutgoingEvent
from bulkwatch.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from bulkwatch.store.base import Delivery, DeliveryStatus
from bulkwatch.store.sqlite.commit import GroupCommit
from bulkwatch.store.sqlite.outbox import SqliteOutbox
from bulkwatch.store.sqlite.store import SqliteStore
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.support import completed_event, write_events
from helpers.webhook_receiver import Receiver, Reply

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KEY = EndpointKey("lazza-main", Platform.SHOPLAZZA, "tasks")
RETRY = RetrySettings(initial=1.0, max_delay=8.0, max_attempts=10, max_age=86400.0)
DELIVERY = DeliverySettings(concurrency=4, batch=50, idle_interval=60.0)


class FlakyNotifier:
    """A notifier with a bug: raises RuntimeError `failures` times, then works."""

    def __init__(self, name: str, failures: int) -> None:
        self.name = name
        self.failures = failures
        self.sent: list[OutgoingEvent] = []

    async def send(self, event: OutgoingEvent) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("boom")
        self.sent.append(event)

    async def aclose(self) -> None:
        pass


class CountingNotifier:
    """Records how many sends overlap; each send yields to the loop a few times."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.active = 0
        self.peak = 0
        self.sent = 0

    async def send(self, event: OutgoingEvent) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        for _ in range(3):
            await asyncio.sleep(0)
        self.active -= 1
        self.sent += 1

    async def aclose(self) -> None:
        pass


class ObservedOutbox(SqliteOutbox):
    """The real outbox, plus an event set when `run()` asks for the next due time: the last
    thing it does before it waits."""

    def __init__(self, group: GroupCommit) -> None:
        super().__init__(group)
        self.waiting = asyncio.Event()

    async def next_due_at(self) -> datetime | None:
        result = await super().next_due_at()
        self.waiting.set()
        return result


class FailingMarkOutbox(SqliteOutbox):
    """The real outbox whose first `mark_delivered` fails as a locked database would."""

    def __init__(self, group: GroupCommit) -> None:
        super().__init__(group)
        self.fail_next_mark = True

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None:
        if self.fail_next_mark:
            self.fail_next_mark = False
            raise sqlite3.OperationalError("database is locked")
        await super().mark_delivered(delivery_id, now)


class ObservedStore(SqliteStore):
    """The real store with an `ObservedOutbox`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._observed = ObservedOutbox(self._group)

    @property
    def outbox(self) -> ObservedOutbox:
        return self._observed


class FailingMarkStore(SqliteStore):
    """The real store with a `FailingMarkOutbox`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._failing = FailingMarkOutbox(self._group)

    @property
    def outbox(self) -> FailingMarkOutbox:
        return self._failing


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def record(
    store: SqliteStore,
    *events: Event,
    notifiers: Sequence[str] = ("hook",),
    encode: Callable[[Event], bytes] | None = None,
) -> None:
    """Write events to the outbox the way a poll does."""
    await write_events(store, events, notifiers, "test-1", encode=encode)


def webhook(session: aiohttp.ClientSession, url: str, timeout: float = 5.0) -> WebhookNotifier:
    return WebhookNotifier(WebhookNotifierConfig(name="hook", url=url, timeout=timeout), session)


def dispatcher(
    store: SqliteStore,
    notifiers: Sequence[Notifier],
    registry: CollectorRegistry,
    clock: Callable[[], datetime] | None = None,
    *,
    retry: RetrySettings = RETRY,
    delivery: DeliverySettings = DELIVERY,
) -> Dispatcher:
    return Dispatcher(
        store.outbox,
        {n.name: n for n in notifiers},
        retry,
        delivery,
        Metrics(registry),
        clock=clock or ManualClock(),
        rng=random.Random(1234),
    )


def deliveries(registry: CollectorRegistry, outcome: str, notifier: str = "hook") -> float:
    value = registry.get_sample_value(
        "bulkwatch_deliveries_total", {"notifier": notifier, "outcome": outcome}
    )
    return value or 0.0


async def only_row(store: SqliteStore, status: DeliveryStatus) -> Delivery:
    (row,) = await store.outbox.list_deliveries(status)
    return row


async def test_due_event_is_delivered_and_counted(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    event = completed_event("t1", T0)
    await record(store, event)
    d = dispatcher(store, [webhook(session, receiver.url)], registry)

    assert await d.run_once() == 1

    (request,) = receiver.requests
    assert request.body == encode_cloudevent(event, "test-1")
    row = await only_row(store, DeliveryStatus.DELIVERED)
    assert row.event_id == event.id
    assert row.delivered_at == T0
    assert deliveries(registry, "delivered") == 1
    count = registry.get_sample_value(
        "bulkwatch_delivery_duration_seconds_count", {"notifier": "hook"}
    )
    assert count == 1
    assert await d.run_once() == 0


async def test_failed_delivery_is_retried_until_the_receiver_recovers(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    receiver.script = [Reply(500), Reply(503)]
    await record(store, completed_event("t1", T0))
    clock = ManualClock()
    d = dispatcher(store, [webhook(session, receiver.url)], registry, clock)

    for attempt in (1, 2):
        with capture_logs() as logs:
            assert await d.run_once() == 1
        row = await only_row(store, DeliveryStatus.PENDING)
        assert row.attempts == attempt
        assert row.last_error == f"HTTP {500 if attempt == 1 else 503} from webhook"
        (entry,) = logs
        assert entry["event"] == "delivery failed"
        assert entry["log_level"] == "warning"
        assert entry["attempt"] == attempt
        assert entry["next_attempt_at"] == row.next_attempt_at.isoformat()
        assert await d.run_once() == 0  # not due yet
        clock.now = row.next_attempt_at

    assert await d.run_once() == 1
    assert (await only_row(store, DeliveryStatus.DELIVERED)).attempts == 2
    assert len(receiver.requests) == 3
    assert deliveries(registry, "retry") == 2
    assert deliveries(registry, "delivered") == 1


async def test_backoff_doubles_with_equal_jitter_up_to_max_delay(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    receiver.default = Reply(503)
    await record(store, completed_event("t1", T0))
    clock = ManualClock()
    d = dispatcher(store, [webhook(session, receiver.url)], registry, clock)

    for failed in range(7):
        assert await d.run_once() == 1
        row = await only_row(store, DeliveryStatus.PENDING)
        delay = (row.next_attempt_at - clock.now).total_seconds()
        ceiling = min(RETRY.max_delay, RETRY.initial * 2**failed)
        assert ceiling / 2 - 1e-6 <= delay <= ceiling + 1e-6
        clock.now = row.next_attempt_at


def test_backoff_delay_is_seeded_bounded_and_never_overflows() -> None:
    first = [backoff_delay(RETRY, n, random.Random(7)) for n in range(1, 40)]
    again = [backoff_delay(RETRY, n, random.Random(7)) for n in range(1, 40)]
    assert first == again
    assert all(RETRY.max_delay / 2 <= d <= RETRY.max_delay for d in first[4:])
    assert backoff_delay(RETRY, 10**6, random.Random(7)) <= RETRY.max_delay


@pytest.mark.parametrize("case", [("120", 120.0), ("5000", 600.0)])
async def test_retry_after_is_honoured_and_capped_at_max_delay(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
    case: tuple[str, float],
) -> None:
    retry_after, expected = case
    receiver.default = Reply(429, {"Retry-After": retry_after})
    await record(store, completed_event("t1", T0))
    retry = RetrySettings(initial=1.0, max_delay=600.0)
    d = dispatcher(store, [webhook(session, receiver.url)], registry, retry=retry)

    assert await d.run_once() == 1
    row = await only_row(store, DeliveryStatus.PENDING)
    assert row.next_attempt_at - T0 == timedelta(seconds=expected)


async def test_delivery_is_dead_after_max_attempts(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    receiver.default = Reply(500)
    await record(store, completed_event("t1", T0))
    clock = ManualClock()
    retry = RetrySettings(initial=1.0, max_delay=8.0, max_attempts=3)
    d = dispatcher(store, [webhook(session, receiver.url)], registry, clock, retry=retry)

    for _ in range(2):
        assert await d.run_once() == 1
        clock.now = (await only_row(store, DeliveryStatus.PENDING)).next_attempt_at
    with capture_logs() as logs:
        assert await d.run_once() == 1

    row = await only_row(store, DeliveryStatus.DEAD)
    assert row.attempts == 3
    assert row.last_error == "HTTP 500 from webhook (gave up after 3 attempts)"
    assert [(e["event"], e["log_level"]) for e in logs] == [("delivery dead-lettered", "error")]
    assert deliveries(registry, "retry") == 2
    assert deliveries(registry, "dead") == 1
    assert await d.run_once() == 0


async def test_delivery_is_dead_after_max_age(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    receiver.default = Reply(502)
    await record(store, completed_event("t1", T0))
    retry = RetrySettings(initial=1.0, max_age=60.0)
    clock = ManualClock(T0 + timedelta(seconds=61))
    d = dispatcher(store, [webhook(session, receiver.url)], registry, clock, retry=retry)

    assert await d.run_once() == 1
    row = await only_row(store, DeliveryStatus.DEAD)
    assert row.attempts == 1
    assert row.last_error == "HTTP 502 from webhook (gave up after 61s)"


async def test_permanent_4xx_is_dead_at_once(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    receiver.default = Reply(404)
    await record(store, completed_event("t1", T0))
    d = dispatcher(store, [webhook(session, receiver.url)], registry)

    assert await d.run_once() == 1
    row = await only_row(store, DeliveryStatus.DEAD)
    assert (row.attempts, row.last_error) == (1, "HTTP 404 from webhook")
    assert deliveries(registry, "dead") == 1
    assert deliveries(registry, "retry") == 0


async def test_row_of_a_notifier_no_longer_configured_is_dead(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    await record(store, completed_event("t1", T0), notifiers=["gone"])
    d = dispatcher(store, [webhook(session, receiver.url)], registry)

    assert await d.run_once() == 1
    row = await only_row(store, DeliveryStatus.DEAD)
    assert (row.notifier, row.attempts) == ("gone", 0)
    assert row.last_error == "notifier gone is not configured"
    assert receiver.requests == []


async def test_stored_body_that_is_not_a_json_object_is_dead(
    store: SqliteStore, registry: CollectorRegistry
) -> None:
    notifier = FlakyNotifier("hook", failures=0)
    await record(store, completed_event("t1", T0), encode=lambda e: b"{not json")
    await record(store, completed_event("t2", T0), encode=lambda e: b"[1, 2]")
    d = dispatcher(store, [notifier], registry)

    assert await d.run_once() == 2
    rows = await store.outbox.list_deliveries(DeliveryStatus.DEAD)
    assert [r.last_error for r in rows] == ["stored event body is not a JSON object"] * 2
    assert notifier.sent == []


async def test_notifier_bug_is_retried_and_the_dispatcher_survives(
    store: SqliteStore, registry: CollectorRegistry
) -> None:
    notifier = FlakyNotifier("hook", failures=1)
    await record(store, completed_event("t1", T0))
    clock = ManualClock()
    d = dispatcher(store, [notifier], registry, clock)

    with capture_logs() as logs:
        assert await d.run_once() == 1
    row = await only_row(store, DeliveryStatus.PENDING)
    assert (row.attempts, row.last_error) == (1, "RuntimeError: boom")
    bug = next(e for e in logs if e["log_level"] == "error")
    assert bug["exc_info"] is True
    assert bug["notifier"] == "hook"

    clock.now = row.next_attempt_at
    assert await d.run_once() == 1
    assert (await only_row(store, DeliveryStatus.DELIVERED)).attempts == 1
    assert [e.attempt for e in notifier.sent] == [2]


async def test_store_error_while_marking_keeps_the_outcome_and_records_it_without_resending(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    store = FailingMarkStore(tmp_path / "state.db")
    await store.open()
    try:
        notifier = FlakyNotifier("hook", failures=0)
        await record(store, completed_event("t1", T0))
        d = dispatcher(store, [notifier], registry)

        with capture_logs() as logs:
            assert await d.run_once() == 1
        assert [e["event"] for e in logs if e["log_level"] == "error"] == [
            "delivery paused: cannot record outcomes"
        ]
        assert d.paused
        assert (await only_row(store, DeliveryStatus.PENDING)).attempts == 0

        assert await d.run_once() == 0  # records the held outcome; sends nothing again
        assert not d.paused
        assert len(notifier.sent) == 1
        await only_row(store, DeliveryStatus.DELIVERED)
    finally:
        await store.close()


async def test_sends_overlap_up_to_the_concurrency_limit(
    store: SqliteStore, registry: CollectorRegistry
) -> None:
    notifier = CountingNotifier("hook")
    await record(store, *(completed_event(f"t{i}", T0) for i in range(6)))
    delivery = DeliverySettings(concurrency=2, batch=50, idle_interval=60.0)
    d = dispatcher(store, [notifier], registry, delivery=delivery)

    assert await d.run_once() == 6
    assert (notifier.sent, notifier.peak) == (6, 2)


async def test_run_once_attempts_at_most_one_batch(
    store: SqliteStore, registry: CollectorRegistry
) -> None:
    notifier = FlakyNotifier("hook", failures=0)
    await record(store, *(completed_event(f"t{i}", T0) for i in range(3)))
    delivery = DeliverySettings(concurrency=4, batch=2, idle_interval=60.0)
    d = dispatcher(store, [notifier], registry, delivery=delivery)

    assert [await d.run_once() for _ in range(3)] == [2, 1, 0]


async def test_refresh_gauges_sets_pending_and_dead_for_every_configured_notifier(
    store: SqliteStore, registry: CollectorRegistry
) -> None:
    await record(store, completed_event("t1", T0), notifiers=["hook"])
    await record(store, completed_event("t2", T0), notifiers=["hook", "gone"])
    d = dispatcher(store, [FlakyNotifier("hook", 0), FlakyNotifier("quiet", 0)], registry)
    await store.outbox.mark_dead(
        (await store.outbox.list_deliveries(DeliveryStatus.PENDING, notifier="hook"))[0].id,
        attempts=1,
        error="HTTP 404 from webhook",
    )

    await d.refresh_gauges()

    def gauge(name: str, notifier: str) -> float | None:
        return registry.get_sample_value(f"bulkwatch_outbox_{name}", {"notifier": notifier})

    assert (gauge("pending", "hook"), gauge("dead", "hook")) == (1, 1)
    assert (gauge("pending", "quiet"), gauge("dead", "quiet")) == (0, 0)
    assert gauge("pending", "gone") is None  # labels come from config only


@pytest.fixture
async def observed(tmp_path: Path) -> AsyncIterator[ObservedStore]:
    s = ObservedStore(tmp_path / "observed.db")
    await s.open()
    yield s
    await s.close()


def real_clock() -> datetime:
    return datetime.now(UTC)


async def start(d: Dispatcher) -> asyncio.Task[None]:
    return asyncio.create_task(d.run(), name="dispatcher")


async def test_wake_makes_run_deliver_promptly(
    observed: ObservedStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    # Real clock; idle_interval is 60 s, so only wake() can explain a prompt delivery.
    d = dispatcher(observed, [webhook(session, receiver.url)], registry, real_clock)
    task = await start(d)
    try:
        async with asyncio.timeout(5):
            await observed.outbox.waiting.wait()  # run() found nothing and is now waiting
        await record(observed, completed_event("t1", datetime.now(UTC)))
        d.wake()
        await receiver.wait_for_requests(1, within=5)
    finally:
        await d.drain(5)
        await task
    await only_row(observed, DeliveryStatus.DELIVERED)
    assert deliveries(registry, "delivered") == 1
    assert registry.get_sample_value("bulkwatch_outbox_pending", {"notifier": "hook"}) == 0


async def test_run_retries_by_itself_when_the_next_attempt_falls_due(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    receiver.script = [Reply(503)]
    retry = RetrySettings(initial=0.05, max_delay=0.1)
    d = dispatcher(store, [webhook(session, receiver.url)], registry, real_clock, retry=retry)
    await record(store, completed_event("t1", real_clock()))
    task = await start(d)
    try:
        # No wake(): the retry is found through next_due_at(), well before idle_interval.
        await receiver.wait_for_requests(2, within=5)
    finally:
        await d.drain(5)
        await task
    assert (await only_row(store, DeliveryStatus.DELIVERED)).attempts == 1


async def test_drain_lets_an_in_flight_delivery_finish(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    receiver.hold = asyncio.Event()
    d = dispatcher(store, [webhook(session, receiver.url)], registry, real_clock)
    await record(store, completed_event("t1", real_clock()))
    task = await start(d)
    try:
        await receiver.wait_for_requests(1, within=5)
        drain = asyncio.create_task(d.drain(5))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not drain.done()  # still waiting for the held response
        receiver.hold.set()
        async with asyncio.timeout(5):
            await drain
            await task
    finally:
        if not task.done():
            await d.drain(0)
            await task
    await only_row(store, DeliveryStatus.DELIVERED)
    assert await d.run_once() == 0  # stopped: nothing new starts


async def test_drain_cancels_a_stuck_delivery_after_the_grace_period(
    store: SqliteStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    receiver.hold = asyncio.Event()  # never set during the test
    d = dispatcher(store, [webhook(session, receiver.url)], registry, real_clock)
    await record(store, completed_event("t1", real_clock()))
    task = await start(d)
    await receiver.wait_for_requests(1, within=5)
    with capture_logs() as logs:
        async with asyncio.timeout(5):
            await d.drain(0.1)
            await task
    row = await only_row(store, DeliveryStatus.PENDING)  # sent again after a restart
    assert row.attempts == 0
    assert any(e["event"].startswith("delivery drain timed out") for e in logs)
