"""The state-store contract, on every backend: the outbox hands out due rows in order and
records what became of each."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from bulkwatch.model import (
    EventType,
    Platform,
    store_event,
)
from bulkwatch.store.base import StateStore
from helpers.store_support import (
    DEAD,
    DELIVERED,
    LINE,
    PENDING,
    T0,
    Backend,
    event_for,
    peek_due,
    pending_rows,
    record,
    snap,
    tracked,
)


async def test_due_deliveries_come_by_next_attempt_then_id_up_to_the_limit(
    store: StateStore,
) -> None:
    ids = await pending_rows(store, 4)
    await store.outbox.mark_retry(
        ids[0], attempts=1, next_attempt_at=T0 + timedelta(hours=1), error="x"
    )
    await store.outbox.mark_retry(
        ids[3], attempts=1, next_attempt_at=T0 + timedelta(seconds=1), error=""
    )

    due = await peek_due(store, T0 + timedelta(seconds=2), 10)
    assert [d.id for d in due] == [ids[1], ids[3], ids[2]]  # ids[3] ties with ids[1]: id decides
    assert [d.id for d in await peek_due(store, T0 + timedelta(seconds=2), 2)] == [
        ids[1],
        ids[3],
    ]
    assert await peek_due(store, T0 - timedelta(microseconds=1), 10) == []
    assert len(await peek_due(store, T0 + timedelta(hours=1), 10)) == 4
    # the same instant in another zone compares the same
    in_plus8 = (T0 + timedelta(seconds=2)).astimezone(timezone(timedelta(hours=8)))
    assert await store.outbox.due_deliveries(in_plus8, 10) == due


async def test_due_ties_are_broken_by_id(store: StateStore) -> None:
    events = [
        store_event(
            EventType.STORE_DOWN,
            store=f"s{i}",
            platform=Platform.SHOPLINE,
            outage=1,
            now=T0,
            reason="HTTP 503",
        )
        for i in range(3)
    ]
    await record(store, LINE, events=events, route=lambda e: ["hook"])
    due = await store.outbox.due_deliveries(T0, 10)
    assert [d.store for d in due] == ["s0", "s1", "s2"]
    assert [d.id for d in due] == sorted(d.id for d in due)


async def test_next_due_at_is_the_earliest_pending_row(store: StateStore) -> None:
    assert await store.outbox.next_due_at() is None
    ids = await pending_rows(store, 3)
    assert await store.outbox.next_due_at() == T0
    await store.outbox.mark_delivered(ids[0], T0)
    assert await store.outbox.next_due_at() == T0 + timedelta(seconds=1)
    await store.outbox.mark_dead(ids[1], attempts=20, error="gave up")
    assert await store.outbox.next_due_at() == T0 + timedelta(seconds=2)
    await store.outbox.mark_delivered(ids[2], T0)
    assert await store.outbox.next_due_at() is None


async def test_mark_transitions_record_attempts_errors_and_times(store: StateStore) -> None:
    a, b, c = await pending_rows(store, 3)
    later = T0 + timedelta(seconds=30, microseconds=7)
    await store.outbox.mark_retry(a, attempts=2, next_attempt_at=later, error="HTTP 503")
    await store.outbox.mark_dead(b, attempts=5, error="HTTP 410")
    await store.outbox.mark_delivered(c, later)

    (retry,) = await store.outbox.list_deliveries(PENDING)
    assert (retry.id, retry.attempts, retry.next_attempt_at, retry.last_error) == (
        a,
        2,
        later,
        "HTTP 503",
    )
    (dead,) = await store.outbox.list_deliveries(DEAD)
    assert (dead.id, dead.attempts, dead.last_error) == (b, 5, "HTTP 410")
    (done,) = await store.outbox.list_deliveries(DELIVERED)
    assert (done.id, done.delivered_at) == (c, later)


async def test_list_deliveries_filters_by_notifier_and_limits(store: StateStore) -> None:
    task = tracked(snap("a"))
    await record(store, LINE, [task], [event_for(task)])
    assert [d.notifier for d in await store.outbox.list_deliveries(PENDING)] == ["hook", "slack"]
    assert [d.notifier for d in await store.outbox.list_deliveries(PENDING, notifier="slack")] == [
        "slack"
    ]
    assert len(await store.outbox.list_deliveries(PENDING, limit=1)) == 1
    assert await store.outbox.list_deliveries(DEAD) == []


@pytest.mark.parametrize(
    ("ids", "notifier", "requeued"),
    [
        (None, None, {"hook-0", "slack-0", "hook-1", "slack-1"}),
        (None, "slack", {"slack-0", "slack-1"}),
        (["hook-0", "slack-1", "hook-2"], None, {"hook-0", "slack-1"}),
        (["hook-0", "slack-1"], "slack", {"slack-1"}),
        ([], None, set()),
    ],
)
async def test_requeue_dead_makes_chosen_dead_rows_pending_again(
    store: StateStore, ids: list[str] | None, notifier: str | None, requeued: set[str]
) -> None:
    tasks = [tracked(snap(f"t{i}")) for i in range(3)]
    await record(store, LINE, tasks, [event_for(t) for t in tasks])
    event_index = {event_for(t).id: i for i, t in enumerate(tasks)}
    label = {
        r.id: f"{r.notifier}-{event_index[r.event_id]}"
        for r in await store.outbox.list_deliveries(PENDING)
    }
    row_id = {name: i for i, name in label.items()}
    for name in ("hook-0", "slack-0", "hook-1", "slack-1"):  # event 2 stays pending
        await store.outbox.mark_dead(row_id[name], attempts=20, error=f"failed {name}")
    now = T0 + timedelta(hours=2)

    chosen = None if ids is None else [row_id[name] for name in ids]
    count = await store.outbox.requeue_dead(now, ids=chosen, notifier=notifier)

    assert count == len(requeued)
    back = {label[r.id]: r for r in await store.outbox.list_deliveries(PENDING)}
    assert set(back) == requeued | {"hook-2", "slack-2"}
    for name in requeued:
        assert (back[name].attempts, back[name].next_attempt_at, back[name].last_error) == (
            0,
            now,
            f"failed {name}",
        )
    assert len(await store.outbox.list_deliveries(DEAD)) == 4 - len(requeued)


async def test_outbox_counts_group_by_notifier_and_status(store: StateStore) -> None:
    tasks = [tracked(snap(f"t{i}")) for i in range(3)]
    await record(store, LINE, tasks, [event_for(t) for t in tasks])
    rows = await store.outbox.list_deliveries(PENDING)
    await store.outbox.mark_delivered(rows[0].id, T0)
    await store.outbox.mark_dead(rows[1].id, attempts=1, error="HTTP 404")
    counts = await store.outbox.outbox_counts()
    assert counts == {
        (rows[0].notifier, DELIVERED): 1,
        (rows[1].notifier, DEAD): 1,
        ("hook", PENDING): 2,
        ("slack", PENDING): 2,
    }


async def test_committed_outcomes_are_seen_by_another_store_on_the_database(
    backend: Backend, store: StateStore
) -> None:
    ids = await pending_rows(store, 3)
    other = await backend.open()
    try:
        await store.outbox.mark_delivered(ids[0], T0)
        await store.outbox.mark_retry(
            ids[1], attempts=1, next_attempt_at=T0 + timedelta(minutes=1), error="HTTP 503"
        )
        await store.outbox.mark_dead(ids[2], attempts=9, error="HTTP 410")
        await store.outbox.commit()
        await store.outbox.commit()  # nothing marked since: nothing to do
        delivered = await other.outbox.list_deliveries(DELIVERED)
        (retry,) = await other.outbox.list_deliveries(PENDING)
        (dead,) = await other.outbox.list_deliveries(DEAD)
        assert [(d.id, d.delivered_at) for d in delivered] == [(ids[0], T0)]
        assert (retry.id, retry.attempts, retry.last_error) == (ids[1], 1, "HTTP 503")
        assert retry.next_attempt_at == T0 + timedelta(minutes=1)
        assert (dead.id, dead.attempts, dead.last_error) == (ids[2], 9, "HTTP 410")
        assert await other.outbox.next_due_at() == T0 + timedelta(minutes=1)
    finally:
        await other.close()
