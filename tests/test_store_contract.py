"""The state-store contract, run against every backend: SQLite on a real file, and
PostgreSQL (the local server, each test in a schema of its own, dropped afterwards).

Anything a backend promises through `StateStore` is tested here; what only one backend does
(SQLite's group commit, WAL and files) is tested beside it. Without a PostgreSQL answering
on 127.0.0.1:5432 its half of these tests is skipped, saying so.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bulkwatch.model import (
    EndpointState,
    EndpointView,
    EventType,
    Platform,
    StoreHealth,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
    store_event,
)
from bulkwatch.store.base import OutboxRow, PollWrite, SchemaTooNewError, StateStore
from bulkwatch.store.factory import open_store_from_url
from pg_support import fresh_schema
from store_support import (
    DEAD,
    DELIVERED,
    LAZZA,
    LINE,
    LINE_MUTATION,
    PENDING,
    T0,
    Backend,
    PostgresBackend,
    SqliteBackend,
    encode,
    endpoint_state,
    event_for,
    pending_rows,
    record,
    snap,
    tracked,
)


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "var" / "lib" / "bulkwatch.db")
        return
    async with fresh_schema() as (url, schema):
        yield PostgresBackend(url, schema)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StateStore]:
    s = await backend.open()
    yield s
    await s.close()


@pytest.fixture
def local_time_east_of_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC+8: a naive datetime taken for local time shows."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_reopening_keeps_schema_and_close_is_idempotent(backend: Backend) -> None:
    first = await backend.open()
    assert await backend.stored_version() == backend.schema_version
    await first.close()
    await first.close()
    second = await backend.open()
    assert await backend.stored_version() == backend.schema_version
    await second.close()


async def test_a_database_from_a_newer_version_is_refused(backend: Backend) -> None:
    written = await backend.open()
    await written.close()
    await backend.set_stored_version(backend.schema_version + 1)
    newer = open_store_from_url(backend.url)
    with pytest.raises(SchemaTooNewError, match="upgrade bulkwatch"):
        await newer.open()
    with pytest.raises(RuntimeError, match="not open"):
        await newer.list_health()
    assert await backend.stored_version() == backend.schema_version + 1


async def test_calls_before_open_raise_a_clear_error(backend: Backend) -> None:
    with pytest.raises(RuntimeError, match="await open"):
        await open_store_from_url(backend.url).outbox.due_deliveries(T0, 10)


def _start_and_stop(url: str, ready: threading.Barrier) -> int:
    """One process's start on its own thread and event loop: open (migrating), read, close."""

    async def main() -> int:
        store = open_store_from_url(url)
        ready.wait(10)  # every starter at the line, then all at once
        await store.open()
        try:
            return len(await store.list_health())
        finally:
            await store.close()

    return asyncio.run(main())


async def test_several_processes_starting_at_once_on_a_new_database_all_start(
    backend: Backend,
) -> None:
    starters = 6
    ready = threading.Barrier(starters)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(starters) as threads:
        results = await asyncio.gather(
            *(
                loop.run_in_executor(threads, _start_and_stop, backend.url, ready)
                for _ in range(starters)
            )
        )
    assert results == [0] * starters
    assert await backend.stored_version() == backend.schema_version


async def test_a_write_that_fails_part_way_leaves_the_database_unchanged(
    backend: Backend, store: StateStore
) -> None:
    await record(store, LINE, [tracked(snap("a"))], [event_for(tracked(snap("a")))])
    before = await backend.dump(store)
    task = tracked(snap("b"))
    event = event_for(task)
    view = await store.load_view(LINE)
    # The state rows are written first; the outbox row breaks NOT NULL and fails the write.
    broken = OutboxRow(event.id, "hook", event.type, event.store, None, event.time)  # type: ignore[arg-type]
    write = PollWrite(replace(view.endpoint, consecutive_failures=7), view.health, [task], [broken])

    with pytest.raises(backend.integrity_error):
        await store.save_poll(write)
    assert await backend.dump(store) == before
    await record(store, LINE, [tracked(snap("c"))])  # the store is still usable
    assert [t.task_id for t in await store.list_tasks()] == ["a", "c"]


async def test_two_stores_on_one_database_see_each_other_and_share_event_ids(
    backend: Backend,
) -> None:
    a, b = await backend.open(), await backend.open()
    try:
        task = tracked(snap("a"))
        await record(a, LINE, [task], [event_for(task)])
        # A replica saw the same change.
        view = await record(b, LINE, [task], [event_for(task)], task_ids=["a"])
        assert view.tasks == {"a": task}
        assert await b.outbox.outbox_counts() == {("hook", PENDING): 1, ("slack", PENDING): 1}
        assert await a.outbox.outbox_counts() == {("hook", PENDING): 1, ("slack", PENDING): 1}
    finally:
        await a.close()
        await b.close()


async def test_everything_survives_close_and_reopen(backend: Backend, store: StateStore) -> None:
    task = tracked(snap("a"))
    health = StoreHealth("line-main", Platform.SHOPLINE, True, 3, frozenset({"QUERY", "MUTATION"}))
    await record(store, LINE, [task], [event_for(task)], health=health)
    due = await store.outbox.due_deliveries(T0, 10)
    await store.close()

    again = await backend.open()
    try:
        assert await again.list_tasks() == [task]
        assert await again.list_health() == [health]
        assert await endpoint_state(again, LINE) == EndpointState(
            LINE, baselined=True, last_success_at=T0
        )
        assert await again.outbox.due_deliveries(T0, 10) == due
    finally:
        await again.close()


@pytest.mark.usefixtures("local_time_east_of_utc")
async def test_naive_datetimes_are_utc_whatever_the_local_time_zone(store: StateStore) -> None:
    naive = T0.replace(tzinfo=None)
    task = tracked(snap("a", at=naive))
    event = event_for(task, naive)
    await record(store, LINE, [task], [event], route=lambda e: ["hook"])
    (back,) = await store.list_tasks()
    assert back.snapshot.observed_at == T0
    assert back.snapshot.observed_at.tzinfo is not None
    (row,) = await store.outbox.due_deliveries(naive, 10)
    assert row.next_attempt_at == T0
    assert await store.outbox.due_deliveries(naive - timedelta(microseconds=1), 10) == []


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

    due = await store.outbox.due_deliveries(T0 + timedelta(seconds=2), 10)
    assert [d.id for d in due] == [ids[1], ids[3], ids[2]]  # ids[3] ties with ids[1]: id decides
    assert [d.id for d in await store.outbox.due_deliveries(T0 + timedelta(seconds=2), 2)] == [
        ids[1],
        ids[3],
    ]
    assert await store.outbox.due_deliveries(T0 - timedelta(microseconds=1), 10) == []
    assert len(await store.outbox.due_deliveries(T0 + timedelta(hours=1), 10)) == 4
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
