"""The state-store contract, on every backend: views, tasks, endpoints, store health, and
pruning, read back through the protocol exactly as written."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bulkwatch.model import (
    EndpointState,
    EndpointView,
    Platform,
    StoreHealth,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
)
from bulkwatch.store.base import StateStore
from helpers.store_support import (
    DEAD,
    DELIVERED,
    LAZZA,
    LINE,
    LINE_MUTATION,
    PENDING,
    T0,
    encode,
    endpoint_state,
    event_for,
    pending_rows,
    record,
    snap,
    tracked,
)


async def test_first_poll_sees_default_health_endpoint_and_no_tasks(store: StateStore) -> None:
    view = await record(store, LINE)
    assert view == EndpointView(
        StoreHealth("line-main", Platform.SHOPLINE), EndpointState(LINE), {}, health_stored=False
    )
    again = await store.load_view(LINE)
    assert again.health_stored
    assert await endpoint_state(store, LAZZA) is None


async def test_task_state_and_outbox_rows_are_written_together(store: StateStore) -> None:
    tasks = [tracked(snap("a")), tracked(snap("b", TaskStatus.COMPLETED))]
    event = event_for(tasks[0])
    await record(store, LINE, tasks, [event])

    assert await store.list_tasks() == tasks
    state = await endpoint_state(store, LINE)
    assert state == EndpointState(LINE, baselined=True, last_success_at=T0)
    due = await store.outbox.due_deliveries(T0, 10)
    assert [(d.event_id, d.notifier) for d in due] == [(event.id, "hook"), (event.id, "slack")]
    for d in due:
        assert d.body == encode(event)
        assert (d.status, d.attempts, d.event_type, d.store) == (
            PENDING,
            0,
            "bulkwatch.task.running",
            "line-main",
        )
        assert d.created_at == d.next_attempt_at == T0
        assert (d.last_error, d.delivered_at) == (None, None)


async def test_an_event_routed_to_no_notifier_writes_no_outbox_row(store: StateStore) -> None:
    task = tracked(snap("a"))
    await record(store, LINE, [task], [event_for(task)], route=lambda e: [])
    assert await store.list_tasks() == [task]
    assert await store.outbox.outbox_counts() == {}


async def test_recording_the_same_event_again_leaves_the_first_row_alone(
    store: StateStore,
) -> None:
    task = tracked(snap("a"))
    event = event_for(task)
    await record(store, LINE, [task], [event])
    first = await store.outbox.due_deliveries(T0, 10)
    await store.outbox.mark_delivered(first[0].id, T0)

    later = replace(event, time=T0 + timedelta(minutes=5))
    await record(store, LINE, [task], [later, later])
    assert await store.outbox.outbox_counts() == {("hook", DELIVERED): 1, ("slack", PENDING): 1}
    (slack,) = await store.outbox.list_deliveries(PENDING)
    assert slack == first[1]


async def test_the_view_holds_the_asked_tasks_of_this_endpoint_and_its_current_one(
    store: StateStore,
) -> None:
    gone = replace(tracked(snap("old")), gone=True)
    query = tracked(snap("new"))
    quiet = tracked(snap("other"))
    mutation = tracked(snap("m"), endpoint="MUTATION")
    await record(store, LINE, [gone, query, quiet, mutation], current="new")
    other_store = tracked(snap("x", key=LAZZA), endpoint="QUERY")
    await record(store, LAZZA, [other_store])

    # Asked for: gone or not, but only this endpoint's; the current task always.
    view = await record(store, LINE, task_ids=["old", "m", "x", "unknown"], current="new")
    assert view.tasks == {"old": gone, "new": query}
    view = await record(store, LINE, current=None)
    assert view.tasks == {"new": query}
    view = await record(store, LINE)  # no current task any more, nothing asked
    assert view.tasks == {}
    view = await record(store, LINE_MUTATION, task_ids=["m"])
    assert view.tasks == {"m": mutation}


async def test_a_view_of_many_tasks_is_read_in_chunks(store: StateStore) -> None:
    many = [tracked(snap(f"t{i:04d}")) for i in range(1_234)]
    await record(store, LINE, many)
    view = await record(store, LINE, task_ids=[t.task_id for t in many])
    assert view.tasks == {t.task_id: t for t in many}


async def test_store_health_is_shared_by_the_endpoints_of_a_store(store: StateStore) -> None:
    down = StoreHealth("line-main", Platform.SHOPLINE, True, 1, frozenset({"QUERY"}))
    await record(store, LINE, health=down)
    assert (await record(store, LINE_MUTATION)).health == down
    assert (await record(store, LAZZA)).health == StoreHealth("lazza-main", Platform.SHOPLAZZA)


@pytest.mark.parametrize("raw_status", [2, 0, -1, "2", "COMPLETED", "", None, True])
async def test_raw_status_keeps_its_type(store: StateStore, raw_status: str | int | None) -> None:
    task = tracked(replace(snap("a"), raw_status=raw_status))
    await record(store, LINE, [task])
    (back,) = await store.list_tasks()
    assert back.snapshot.raw_status == raw_status
    assert type(back.snapshot.raw_status) is type(raw_status)


async def test_every_field_and_datetime_round_trips_to_the_microsecond_in_utc(
    store: StateStore,
) -> None:
    plus8 = timezone(timedelta(hours=8))
    snapshot = TaskSnapshot(
        platform=Platform.SHOPLINE,
        store="line-main",
        task_id="gid://shopline/BulkOperation/1",
        operation_type="MUTATION",
        status=TaskStatus.FAILED,
        raw_status="FAILED",
        observed_at=datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=plus8),
        url="https://cdn.example/a.jsonl?sig=x",
        partial_data_url="https://cdn.example/partial.jsonl",
        error_code="ACCESS_DENIED",
        reason="denied",
        completed_count=1200,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        completed_at=datetime(2026, 1, 2, 0, 0, 0, 1, tzinfo=UTC),
        expires_at=datetime(2026, 1, 9, 23, 59, 59, 999999, tzinfo=plus8),
    )
    task = TrackedTask(
        snapshot,
        endpoint="QUERY",
        seq=7,
        first_seen_at=datetime(2025, 12, 31, 23, 0, 0, 500000, tzinfo=UTC),
        changed_at=datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=plus8),
        silent_baseline=True,
        stalled_notified=True,
        expiring_notified=True,
        gone=True,
    )
    await record(store, LINE, [task])
    (back,) = await store.list_tasks()
    assert back == task
    s = back.snapshot
    for value in (s.observed_at, s.created_at, s.completed_at, s.expires_at, back.changed_at):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert (s.observed_at.hour, s.observed_at.microsecond) == (19, 999999)


async def test_prune_forgets_old_terminal_and_gone_tasks_and_old_delivered_rows(
    store: StateStore,
) -> None:
    old, cutoff, recent = T0, T0 + timedelta(days=30), T0 + timedelta(days=31)
    tasks = {
        "done-old": tracked(snap("done-old", TaskStatus.COMPLETED, at=old)),
        "done-new": tracked(snap("done-new", TaskStatus.FAILED, at=recent)),
        "running-old": tracked(snap("running-old", at=old)),
        "gone-old": replace(tracked(snap("gone-old", at=old)), gone=True),
        "gone-new": replace(tracked(snap("gone-new", at=recent)), gone=True),
    }
    await record(store, LINE, list(tasks.values()))
    ids = await pending_rows(store, 5)  # t0..t4 replace nothing above: different ids
    await store.outbox.mark_delivered(ids[0], old)
    await store.outbox.mark_delivered(ids[1], recent)
    await store.outbox.mark_dead(
        ids[2], attempts=20, error="gave up"
    )  # dead rows are kept for the CLI
    # ids[3], ids[4] stay pending, created long before the cutoff

    assert await store.prune(cutoff) == 3
    kept = {t.task_id for t in await store.list_tasks()}
    assert kept == {"done-new", "running-old", "gone-new"} | {f"t{i}" for i in range(5)}
    counts = await store.outbox.outbox_counts()
    assert counts == {("hook", DELIVERED): 1, ("hook", DEAD): 1, ("hook", PENDING): 2}
    assert await store.prune(cutoff) == 0


async def test_prune_keeps_a_terminal_task_that_is_still_being_observed(
    store: StateStore,
) -> None:
    finished = tracked(snap("a", TaskStatus.COMPLETED, at=T0))
    still_listed = replace(
        finished, snapshot=replace(finished.snapshot, observed_at=T0 + timedelta(days=40))
    )
    await record(store, LAZZA, [still_listed])
    assert await store.prune(T0 + timedelta(days=30)) == 0


async def test_list_tasks_orders_by_store_and_task_id_and_filters(store: StateStore) -> None:
    await record(store, LINE, [tracked(snap("b")), tracked(snap("a"))])
    await record(store, LAZZA, [tracked(snap("c", key=LAZZA), endpoint="tasks")])
    everything = await store.list_tasks()
    assert [(t.snapshot.store, t.task_id) for t in everything] == [
        ("lazza-main", "c"),
        ("line-main", "a"),
        ("line-main", "b"),
    ]
    assert [t.task_id for t in await store.list_tasks("line-main")] == ["a", "b"]
    assert await store.list_tasks("nope") == []
    assert [h.store for h in await store.list_health()] == ["lazza-main", "line-main"]


async def test_a_write_naming_a_task_twice_keeps_its_last_state(store: StateStore) -> None:
    running, done = tracked(snap("a")), tracked(snap("a", TaskStatus.COMPLETED), seq=1)
    await record(store, LINE, [running, done])
    assert await store.list_tasks() == [done]
