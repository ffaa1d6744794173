"""Dispatchers of several replicas on one PostgreSQL outbox, sending to real webhook receivers
on 127.0.0.1: every event delivered once when nothing fails; a replica stuck with a delivery
in flight loses it to another once its claim runs out (same event id) and its late outcome is
counted, not recorded; rows a dispatcher did not attempt are given back at once. Skipped,
saying so, without a PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from bulkwatch.config import DeliverySettings, RetrySettings
from bulkwatch.delivery.dispatcher import Dispatcher
from bulkwatch.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from bulkwatch.store.postgres.store import PostgresStore
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.pg_support import run_sql
from helpers.support import completed_event, write_events
from helpers.webhook_receiver import Receiver, running_receiver

RETRY = RetrySettings(initial=1.0, max_delay=8.0, max_attempts=10, max_age=86400.0)


def real_clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def slow_receiver() -> AsyncIterator[Receiver]:
    """A receiver that holds every response until the test sets `hold`."""
    async with running_receiver() as r:
        r.hold = asyncio.Event()
        yield r


async def open_store(url: str, owner: str, claim_timeout: float = 300.0) -> PostgresStore:
    store = PostgresStore(url, owner=owner, claim_timeout=claim_timeout)
    await store.open()
    return store


def dispatcher(
    store: PostgresStore,
    session: aiohttp.ClientSession,
    receiver: Receiver,
    registry: CollectorRegistry,
    *,
    delivery: DeliverySettings,
    clock: Callable[[], datetime] = real_clock,
) -> Dispatcher:
    hook = WebhookNotifier(WebhookNotifierConfig(name="hook", url=receiver.url), session)
    return Dispatcher(
        store.outbox,
        {"hook": hook},
        RETRY,
        delivery,
        Metrics(registry),
        clock=clock,
        rng=random.Random(1234),
        log_deliveries=False,
    )


async def statuses(url: str) -> dict[str, tuple[str, str | None]]:
    """Event id -> (status, claimed_by) of every row."""
    rows = await run_sql(url, "SELECT event_id, status, claimed_by FROM outbox")
    return {r[0]: (r[1], r[2]) for r in rows}


async def recorded(url: str, event_id: str, within: float = 5.0) -> tuple[str, str | None]:
    """(status, claimed_by) of the event's row once it is no longer pending (the outcome
    is recorded just after the receiver answers)."""
    async with asyncio.timeout(within):
        while (found := (await statuses(url))[event_id])[0] == "pending":  # noqa: ASYNC110 - the store has no event to wait on
            await asyncio.sleep(0.02)
    return found


async def test_two_replicas_deliver_every_event_exactly_once(
    pg_url: str, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    a, b = await open_store(pg_url, "replica-a"), await open_store(pg_url, "replica-b")
    events = [completed_event(f"t{i}", real_clock()) for i in range(200)]
    await write_events(a, events, ["hook"], "test")
    # Small batches, so the two take turns many times over the 200 rows.
    delivery = DeliverySettings(concurrency=4, batch=10, idle_interval=0.05)
    registries = [CollectorRegistry(), CollectorRegistry()]
    dispatchers = [
        dispatcher(s, session, receiver, r, delivery=delivery)
        for s, r in zip((a, b), registries, strict=True)
    ]
    runs = [asyncio.create_task(d.run()) for d in dispatchers]
    try:
        await receiver.wait_for(200, within=60)
    finally:
        for d in dispatchers:
            await d.drain(5)
        await asyncio.gather(*runs)
        await a.close()
        await b.close()
    received = [e["id"] for e in receiver.events]
    assert receiver.attempts == len(received) == 200
    assert set(received) == {e.id for e in events}  # each once
    stored = await statuses(pg_url)
    assert {status for status, _ in stored.values()} == {"delivered"}
    delivered = [
        r.get_sample_value(
            "bulkwatch_deliveries_total", {"notifier": "hook", "outcome": "delivered"}
        )
        for r in registries
    ]
    assert sum(v or 0 for v in delivered) == 200
    assert [r.get_sample_value("bulkwatch_delivery_claims_lost_total") for r in registries] == [
        0,
        0,
    ]


async def test_a_delivery_stuck_on_one_replica_goes_out_from_another_after_its_claim(
    pg_url: str, slow_receiver: Receiver, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    # Replica a's receiver does not answer; its claims last a second.
    a = await open_store(pg_url, "replica-a", claim_timeout=1.0)
    b = await open_store(pg_url, "replica-b")
    event = completed_event("t1", real_clock())
    await write_events(a, [event], ["hook"], "test")
    # An idle interval of a minute: only the claim running out can wake b in time.
    delivery = DeliverySettings(idle_interval=60.0)
    registry_a = CollectorRegistry()
    da = dispatcher(a, session, slow_receiver, registry_a, delivery=delivery)
    db = dispatcher(b, session, receiver, CollectorRegistry(), delivery=delivery)
    run_a = asyncio.create_task(da.run())
    run_b = None
    try:
        await slow_receiver.wait_for_requests(1)  # in flight on a, claimed
        run_b = asyncio.create_task(db.run())
        (got,) = await receiver.wait_for(1, within=10)
        assert got["id"] == slow_receiver.requests[0].event["id"] == event.id
        assert await recorded(pg_url, event.id) == ("delivered", "replica-b")
        assert slow_receiver.hold is not None
        slow_receiver.hold.set()  # a's attempt ends, long after its claim
    finally:
        await da.drain(5)
        await db.drain(5)
        await asyncio.gather(run_a, *([run_b] if run_b else []))
        await a.close()
        await b.close()
    assert registry_a.get_sample_value("bulkwatch_delivery_claims_lost_total") == 1
    assert (await statuses(pg_url))[event.id] == ("delivered", "replica-b")


async def test_rows_a_draining_replica_did_not_attempt_are_free_at_once(
    pg_url: str, slow_receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    a, b = await open_store(pg_url, "replica-a"), await open_store(pg_url, "replica-b")
    try:
        events = [completed_event(f"t{i}", real_clock()) for i in range(3)]
        await write_events(a, events, ["hook"], "test")
        delivery = DeliverySettings(concurrency=1, batch=3, idle_interval=60.0)
        da = dispatcher(a, session, slow_receiver, CollectorRegistry(), delivery=delivery)
        run_a = asyncio.create_task(da.run())
        await slow_receiver.wait_for_requests(1)
        await da.drain(0.1)  # the send in flight is cancelled, the other two never started
        await run_a
        later = real_clock() + timedelta(minutes=1)
        due = await b.outbox.due_deliveries(later, 10)
        assert sorted(d.event_id for d in due) == sorted(e.id for e in events)
    finally:
        await a.close()
        await b.close()


async def test_a_send_starts_only_in_the_first_half_of_its_claim(
    pg_url: str, slow_receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    a, b = await open_store(pg_url, "replica-a"), await open_store(pg_url, "replica-b")
    clock = ManualClock()
    try:
        events = [completed_event(f"t{i}", clock.now) for i in range(3)]
        await write_events(a, events, ["hook"], "test")
        delivery = DeliverySettings(concurrency=1, batch=3, claim_timeout=10.0)
        da = dispatcher(
            a, session, slow_receiver, CollectorRegistry(), delivery=delivery, clock=clock
        )
        batch = asyncio.create_task(da.run_once())
        await slow_receiver.wait_for_requests(1)
        clock.advance(5)  # half the claim gone while the first send is in flight
        assert slow_receiver.hold is not None
        slow_receiver.hold.set()
        assert await batch == 1
        assert slow_receiver.attempts == 1
        # The two not started were given back: another replica has them at once.
        due = await b.outbox.due_deliveries(clock.now, 10)
        assert len(due) == 2
        sent = slow_receiver.requests[0].event["id"]
        assert {d.event_id for d in due} == {e.id for e in events} - {sent}
        assert (await statuses(pg_url))[sent] == ("delivered", "replica-a")
    finally:
        await a.close()
        await b.close()
