"""Ordered delivery, end to end: each notifier gets the events of one task in the order they
happened.

The real dispatcher over a real outbox (SQLite and PostgreSQL) and real webhooks to one HTTP
receiver on 127.0.0.1 that fails chosen events of one notifier: a later event of a task waits
while an earlier one (same task, same notifier) is pending or retrying; other tasks and other
notifiers are not held up; a dead event releases the ones after it. The store's side of the
rule is the contract in tests/store/test_store_contract_order.py.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

import aiohttp
from prometheus_client import CollectorRegistry

from bulkwatch.config import DeliverySettings, RetrySettings
from bulkwatch.delivery.dispatcher import Dispatcher
from bulkwatch.model import Event, EventType, Platform, TaskSnapshot, TaskStatus, task_event
from bulkwatch.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from bulkwatch.store.base import DeliveryStatus, StateStore
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import START, ManualClock
from helpers.support import write_events
from helpers.webhook_receiver import Receiver, Reply, running_receiver

RETRY = RetrySettings(initial=1.0, max_delay=2.0, max_attempts=10, max_age=3600.0)
DELIVERY = DeliverySettings(concurrency=8, batch=50, idle_interval=0.05)
STEPS = (
    (EventType.TASK_CREATED, TaskStatus.CREATED, None),
    (EventType.TASK_RUNNING, TaskStatus.RUNNING, TaskStatus.CREATED),
    (EventType.TASK_COMPLETED, TaskStatus.COMPLETED, TaskStatus.RUNNING),
)
NOTIFIERS = ("hook", "other")


def _event(task_id: str, step: int) -> Event:
    event_type, status, previous = STEPS[step]
    at = START - timedelta(seconds=10 - step)
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


def _failing(answers: dict[tuple[str, str], list[int]], receiver: Receiver) -> None:
    """The receiver answers each (notifier, event id) in `answers` with its statuses, used up
    in order (then 204), whatever order the requests arrive in."""

    def decide(headers: dict[str, str], body: bytes) -> Reply | None:
        statuses = answers.get((headers["x-notifier"], json.loads(body)["id"]))
        return Reply(statuses.pop(0)) if statuses else Reply(204)

    receiver.decide = decide


def _order(receiver: Receiver, notifier: str, subject: str) -> list[str]:
    """The steps of `subject` that `notifier` delivered, in arrival order."""
    return [
        r.event["type"].rsplit(".", 1)[1]
        for r in receiver.accepted
        if r.headers["x-notifier"] == notifier and r.event["subject"] == subject
    ]


async def test_each_notifier_gets_the_events_of_a_task_in_order(store: StateStore) -> None:
    a, b, c = ([_event(t, i) for i in range(3)] for t in "abc")
    # Interleaved as a busy store's polls write them: a1 b1 c1 a2 b2 c2 a3 b3 c3.
    await write_events(
        store, [e for trio in zip(a, b, c, strict=True) for e in trio], NOTIFIERS, "t"
    )
    clock = ManualClock()
    async with running_receiver() as receiver, aiohttp.ClientSession() as session:
        _failing(
            {
                ("hook", a[0].id): [503, 503, 503],  # retried three times: a2 and a3 wait
                ("hook", c[0].id): [410],  # dead at once: c2 and c3 go on without it
            },
            receiver,
        )
        notifiers = {
            name: WebhookNotifier(
                WebhookNotifierConfig(name=name, url=receiver.url, headers={"X-Notifier": name}),
                session,
            )
            for name in NOTIFIERS
        }
        dispatcher = Dispatcher(
            store.outbox,
            notifiers,
            RETRY,
            DELIVERY,
            Metrics(CollectorRegistry()),
            clock=clock,
            rng=random.Random(1),
        )
        rounds = 0
        while (due := await store.outbox.next_due_at()) is not None:
            clock.now = max(clock.now, due)  # the test moves time to the next due row
            await dispatcher.run_once()
            rounds += 1
            assert rounds < 30, "the outbox never emptied"
    dead = await store.outbox.list_deliveries(DeliveryStatus.DEAD)
    assert [(d.notifier, d.event_id) for d in dead] == [("hook", c[0].id)]
    everything = ["created", "running", "completed"]
    assert _order(receiver, "hook", "lazza-main/a") == everything
    assert _order(receiver, "hook", "lazza-main/b") == everything
    assert _order(receiver, "hook", "lazza-main/c") == ["running", "completed"]
    for task in "abc":
        assert _order(receiver, "other", f"lazza-main/{task}") == everything
    # Nobody else waited for hook's retries of a's first event.
    accepted = [
        (r.headers["x-notifier"], r.event["subject"], r.event["type"]) for r in receiver.accepted
    ]
    before = accepted[: accepted.index(("hook", "lazza-main/a", EventType.TASK_CREATED))]
    assert ("hook", "lazza-main/b", EventType.TASK_COMPLETED) in before
    assert ("hook", "lazza-main/c", EventType.TASK_COMPLETED) in before
    assert ("other", "lazza-main/a", EventType.TASK_COMPLETED) in before
    assert receiver.attempts == 3 * 3 * 2 + 3  # every event once, plus three retries
