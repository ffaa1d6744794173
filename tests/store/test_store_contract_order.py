"""The state-store contract, on every backend: ordered delivery. A pending row waits while an
older pending row of the same notifier and subject (a task, or a store's up and down) exists;
other subjects and other notifiers are not held up; a delivered or dead row releases the next.
"""

from __future__ import annotations

from datetime import timedelta

from bulkwatch.model import Event, EventType, Platform, TaskStatus, store_event
from bulkwatch.store.base import StateStore
from helpers.store_support import (
    LINE,
    PENDING,
    T0,
    Backend,
    encode,
    event_for,
    peek_due,
    record,
    snap,
    tracked,
)

STEPS = (TaskStatus.CREATED, TaskStatus.RUNNING, TaskStatus.COMPLETED)


def _lifecycle(task_id: str) -> list[Event]:
    """The three events of one task, one second apart."""
    return [
        event_for(tracked(snap(task_id, status, at=T0 + timedelta(seconds=i)), seq=i), T0)
        for i, status in enumerate(STEPS)
    ]


async def _rows(store: StateStore) -> dict[tuple[str, str], int]:
    """(notifier, event id) -> row id of every pending row."""
    return {(d.notifier, d.event_id): d.id for d in await store.outbox.list_deliveries(PENDING)}


async def _due(store: StateStore, seconds: float = 3600) -> set[tuple[str, str]]:
    due = await peek_due(store, T0 + timedelta(seconds=seconds))
    return {(d.notifier, d.event_id) for d in due}


async def test_a_later_event_of_a_subject_waits_for_the_earlier_one(store: StateStore) -> None:
    a, b = _lifecycle("a"), _lifecycle("b")
    # Interleaved, as a busy store's polls write them; every event to hook and slack.
    await record(store, LINE, events=[e for pair in zip(a, b, strict=True) for e in pair])
    first = {(n, e.id) for n in ("hook", "slack") for e in (a[0], b[0])}
    assert await _due(store) == first
    assert (await peek_due(store, T0 + timedelta(hours=1), 2))[0].event_id == a[0].id

    rows = await _rows(store)
    # hook's first event of a delivered: its second is due; slack's of a still waits.
    await store.outbox.mark_delivered(rows["hook", a[0].id], T0)
    assert await _due(store) == (first - {("hook", a[0].id)}) | {("hook", a[1].id)}
    # Retried later: the later events of that subject keep waiting behind it.
    await store.outbox.mark_retry(
        rows["hook", a[1].id], attempts=1, next_attempt_at=T0 + timedelta(hours=2), error="503"
    )
    assert ("hook", a[2].id) not in await _due(store, 3 * 3600)
    assert ("hook", a[1].id) not in await _due(store)
    # Dead: it releases the next one.
    await store.outbox.mark_dead(rows["hook", a[1].id], attempts=2, error="HTTP 410")
    assert ("hook", a[2].id) in await _due(store)


async def test_next_due_at_skips_rows_held_behind_an_earlier_one(store: StateStore) -> None:
    a = _lifecycle("a")
    await record(store, LINE, events=a, route=lambda e: ["hook"])
    rows = await _rows(store)
    later = T0 + timedelta(minutes=5)
    await store.outbox.mark_retry(
        rows["hook", a[0].id], attempts=1, next_attempt_at=later, error=""
    )
    # a[1] and a[2] were due at T0, but they wait: the earliest pending row not held is a[0].
    assert await store.outbox.next_due_at() == later
    assert await _due(store, 60) == set()
    await store.outbox.mark_delivered(rows["hook", a[0].id], later)
    assert await store.outbox.next_due_at() == T0
    assert await _due(store, 0) == {("hook", a[1].id)}


async def test_a_requeued_dead_event_holds_the_later_ones_again(store: StateStore) -> None:
    a = _lifecycle("a")
    await record(store, LINE, events=a[:2], route=lambda e: ["hook"])
    rows = await _rows(store)
    await store.outbox.mark_dead(rows["hook", a[0].id], attempts=20, error="gave up")
    assert await _due(store) == {("hook", a[1].id)}
    assert await store.outbox.requeue_dead(T0) == 1
    assert await _due(store) == {("hook", a[0].id)}


async def test_a_store_s_down_and_up_are_ordered_apart_from_its_tasks(
    store: StateStore,
) -> None:
    down = store_event(
        EventType.STORE_DOWN,
        store=LINE.store,
        platform=Platform.SHOPLINE,
        outage=1,
        now=T0,
        reason="HTTP 503",
    )
    up = store_event(
        EventType.STORE_UP,
        store=LINE.store,
        platform=Platform.SHOPLINE,
        outage=1,
        now=T0,
        reason="recovered",
    )
    a = _lifecycle("a")
    await record(store, LINE, events=[down, a[0], up, a[1]], route=lambda e: ["hook"])
    assert down.subject != a[0].subject
    assert await _due(store) == {("hook", down.id), ("hook", a[0].id)}


async def test_rows_pending_from_before_ordered_delivery_are_ordered_too(
    backend: Backend,
) -> None:
    a, b = _lifecycle("a"), _lifecycle("b")
    await backend.write_before_ordering(
        [
            (a[0].id, "hook", a[0].type, a[0].store, encode(a[0]), "dead", T0),
            (a[1].id, "hook", a[1].type, a[1].store, encode(a[1]), "pending", T0),
            (a[2].id, "hook", a[2].type, a[2].store, encode(a[2]), "pending", T0),
            (b[0].id, "hook", b[0].type, b[0].store, encode(b[0]), "delivered", T0),
            (b[1].id, "hook", b[1].type, b[1].store, encode(b[1]), "pending", T0),
            # A body that is not JSON: no subject, never held.
            ("x", "hook", "t", "s", b"\x00\xff", "pending", T0),
        ]
    )
    store = await backend.open()
    try:
        # a's first event is dead, so its second is due, and the third waits for it.
        assert await _due(store) == {("hook", a[1].id), ("hook", b[1].id), ("hook", "x")}
        await store.outbox.requeue_dead(T0)
        assert await _due(store) == {("hook", a[0].id), ("hook", b[1].id), ("hook", "x")}
    finally:
        await store.close()
