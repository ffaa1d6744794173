"""The SQLite state store on real files: one transaction per poll, an at-least-once outbox."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    EndpointView,
    Event,
    EventType,
    Platform,
    StoreHealth,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
    encode_cloudevent,
    store_event,
    task_event,
)
from bulkwatch.store.base import DeliveryStatus, OutboxRow, PollWrite, StateStore
from bulkwatch.store.factory import open_store_from_url
from bulkwatch.store.sqlite.migrations import SCHEMA_VERSION
from bulkwatch.store.sqlite.schema import SchemaTooNewError
from bulkwatch.store.sqlite.store import SqliteStore

T0 = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
LAZZA = EndpointKey("lazza-main", Platform.SHOPLAZZA, "tasks")
LINE = EndpointKey("line-main", Platform.SHOPLINE, "QUERY")
LINE_MUTATION = EndpointKey("line-main", Platform.SHOPLINE, "MUTATION")
NOTIFIERS = ("hook", "slack")

PENDING, DELIVERED, DEAD = DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.DEAD


def encode(event: Event) -> bytes:
    return encode_cloudevent(event, "test-instance")


def route_all(event: Event) -> Sequence[str]:
    return NOTIFIERS


def snap(
    task_id: str,
    status: TaskStatus = TaskStatus.RUNNING,
    *,
    key: EndpointKey = LINE,
    at: datetime = T0,
) -> TaskSnapshot:
    raw: str | int = {TaskStatus.RUNNING: 1, TaskStatus.COMPLETED: 2}.get(status, 0)
    return TaskSnapshot(
        platform=key.platform,
        store=key.store,
        task_id=task_id,
        operation_type="QUERY",
        status=status,
        raw_status=status.value if key.platform is Platform.SHOPLINE else raw,
        observed_at=at,
    )


def tracked(snapshot: TaskSnapshot, *, endpoint: str = "QUERY", seq: int = 0) -> TrackedTask:
    at = snapshot.observed_at
    return TrackedTask(snapshot, endpoint=endpoint, seq=seq, first_seen_at=at, changed_at=at)


def event_for(task: TrackedTask, at: datetime = T0) -> Event:
    s = task.snapshot
    return task_event(EventType.for_status(s.status), s, seq=task.seq, previous=None, now=at)


async def record(
    store: SqliteStore,
    key: EndpointKey,
    upserts: Sequence[TrackedTask] = (),
    events: Sequence[Event] = (),
    *,
    health: StoreHealth | None = None,
    route: Callable[[Event], Sequence[str]] = route_all,
    task_ids: Sequence[str] = (),
    current: str | None = None,
) -> EndpointView:
    """Load the view of one poll, then write the given outcome as a poll does; return the
    view it loaded."""
    view = await store.load_view(key, task_ids)
    endpoint = replace(view.endpoint, baselined=True, last_success_at=T0, current_task_id=current)
    outbox = [
        OutboxRow(e.id, name, e.type, e.store, encode(e), e.time)
        for e in events
        for name in route(e)
    ]
    unchanged = None if view.health_stored else view.health
    await store.save_poll(PollWrite(endpoint, health or unchanged, upserts, outbox))
    return view


async def endpoint_state(store: SqliteStore, key: EndpointKey) -> EndpointState | None:
    """The stored state of one endpoint, read through the public protocol."""
    found = [e for e in await store.list_endpoints(key.store) if e.key == key]
    return found[0] if found else None


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "lib" / "bulkwatch.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db_path)
    await s.open()
    yield s
    await s.close()


async def reopened(path: Path) -> SqliteStore:
    s = SqliteStore(path)
    await s.open()
    return s


def raw_dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


async def pending_rows(store: SqliteStore, count: int) -> list[int]:
    """`count` pending deliveries (one event each, notifier "hook"), due T0 + i seconds."""
    tasks = [tracked(snap(f"t{i}", at=T0 + timedelta(seconds=i))) for i in range(count)]
    events = [event_for(t, T0 + timedelta(seconds=i)) for i, t in enumerate(tasks)]
    await record(store, LINE, tasks, events, route=lambda e: ["hook"])
    return [d.id for d in await store.outbox.list_deliveries(PENDING)]


def test_sqlite_store_satisfies_the_state_store_protocol(db_path: Path) -> None:
    store: StateStore = SqliteStore(db_path)  # mypy checks the structure
    assert isinstance(store, SqliteStore)


async def test_open_creates_directories_enables_wal_and_sets_pragmas(
    store: SqliteStore, db_path: Path
) -> None:
    assert {"bulkwatch.db", "bulkwatch.db-wal"} <= files_in(db_path.parent)
    conn = store._db()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    other = sqlite3.connect(db_path)
    try:  # WAL is a property of the file, not only of our connection
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        other.close()


async def test_reopening_keeps_schema_and_close_is_idempotent(db_path: Path) -> None:
    first = await reopened(db_path)
    await first.close()
    await first.close()
    second = await reopened(db_path)
    assert second._db().execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    await second.close()


async def test_a_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    written = await reopened(db_path)
    written._db().execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    await written.close()
    newer = SqliteStore(db_path)
    with pytest.raises(SchemaTooNewError, match="upgrade bulkwatch"):
        await newer.open()
    with pytest.raises(RuntimeError, match="not open"):
        await newer.list_health()


async def test_calls_before_open_raise_a_clear_error(db_path: Path) -> None:
    with pytest.raises(RuntimeError, match="await open"):
        await SqliteStore(db_path).outbox.due_deliveries(T0, 10)


async def test_first_poll_sees_default_health_endpoint_and_no_tasks(store: SqliteStore) -> None:
    view = await record(store, LINE)
    assert view == EndpointView(
        StoreHealth("line-main", Platform.SHOPLINE), EndpointState(LINE), {}, health_stored=False
    )
    again = await store.load_view(LINE)
    assert again.health_stored
    assert await endpoint_state(store, LAZZA) is None


async def test_task_state_and_outbox_rows_are_written_together(store: SqliteStore) -> None:
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


async def test_an_event_routed_to_no_notifier_writes_no_outbox_row(store: SqliteStore) -> None:
    task = tracked(snap("a"))
    await record(store, LINE, [task], [event_for(task)], route=lambda e: [])
    assert await store.list_tasks() == [task]
    assert await store.outbox.outbox_counts() == {}


async def test_a_write_that_fails_part_way_leaves_the_database_unchanged(
    store: SqliteStore, db_path: Path
) -> None:
    await record(store, LINE, [tracked(snap("a"))], [event_for(tracked(snap("a")))])
    before = raw_dump(db_path)
    task = tracked(snap("b"))
    event = event_for(task)
    view = await store.load_view(LINE)
    # The state rows are written first; the outbox row breaks NOT NULL and fails the write.
    broken = OutboxRow(event.id, "hook", event.type, event.store, None, event.time)  # type: ignore[arg-type]
    write = PollWrite(replace(view.endpoint, consecutive_failures=7), view.health, [task], [broken])

    with pytest.raises(sqlite3.IntegrityError):
        await store.save_poll(write)
    store.flush()
    assert raw_dump(db_path) == before
    assert not store._db().in_transaction
    await record(store, LINE, [tracked(snap("c"))])  # the store is still usable
    assert [t.task_id for t in await store.list_tasks()] == ["a", "c"]


async def test_recording_the_same_event_again_leaves_the_first_row_alone(
    store: SqliteStore,
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


async def test_two_stores_on_one_file_see_each_other_and_share_event_ids(db_path: Path) -> None:
    a, b = await reopened(db_path), await reopened(db_path)
    try:
        task = tracked(snap("a"))
        await record(a, LINE, [task], [event_for(task)])
        # A replica saw the same change.
        view = await record(b, LINE, [task], [event_for(task)], task_ids=["a"])
        assert view.tasks == {"a": task}
        assert await b.outbox.outbox_counts() == {("hook", PENDING): 1, ("slack", PENDING): 1}
    finally:
        await a.close()
        await b.close()


async def test_everything_survives_close_and_reopen(store: SqliteStore, db_path: Path) -> None:
    task = tracked(snap("a"))
    health = StoreHealth("line-main", Platform.SHOPLINE, True, 3, frozenset({"QUERY", "MUTATION"}))
    await record(store, LINE, [task], [event_for(task)], health=health)
    due = await store.outbox.due_deliveries(T0, 10)
    await store.close()

    again = await reopened(db_path)
    try:
        assert await again.list_tasks() == [task]
        assert await again.list_health() == [health]
        assert await endpoint_state(again, LINE) == EndpointState(
            LINE, baselined=True, last_success_at=T0
        )
        assert await again.outbox.due_deliveries(T0, 10) == due
    finally:
        await again.close()


async def test_the_view_holds_the_asked_tasks_of_this_endpoint_and_its_current_one(
    store: SqliteStore,
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


async def test_a_view_of_many_tasks_is_read_in_chunks(store: SqliteStore) -> None:
    many = [tracked(snap(f"t{i:04d}")) for i in range(1_234)]
    await record(store, LINE, many)
    view = await record(store, LINE, task_ids=[t.task_id for t in many])
    assert view.tasks == {t.task_id: t for t in many}


async def test_store_health_is_shared_by_the_endpoints_of_a_store(store: SqliteStore) -> None:
    down = StoreHealth("line-main", Platform.SHOPLINE, True, 1, frozenset({"QUERY"}))
    await record(store, LINE, health=down)
    assert (await record(store, LINE_MUTATION)).health == down
    assert (await record(store, LAZZA)).health == StoreHealth("lazza-main", Platform.SHOPLAZZA)


@pytest.mark.parametrize("raw_status", [2, 0, -1, "2", "COMPLETED", "", None, True])
async def test_raw_status_keeps_its_type(store: SqliteStore, raw_status: str | int | None) -> None:
    task = tracked(replace(snap("a"), raw_status=raw_status))
    await record(store, LINE, [task])
    (back,) = await store.list_tasks()
    assert back.snapshot.raw_status == raw_status
    assert type(back.snapshot.raw_status) is type(raw_status)


async def test_every_field_and_datetime_round_trips_to_the_microsecond_in_utc(
    store: SqliteStore,
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


async def test_naive_datetimes_are_read_as_utc(store: SqliteStore) -> None:
    naive = T0.replace(tzinfo=None)
    task = tracked(snap("a", at=naive))
    await record(store, LINE, [task])
    (back,) = await store.list_tasks()
    assert back.snapshot.observed_at == T0
    assert back.snapshot.observed_at.tzinfo is not None


async def test_due_deliveries_come_by_next_attempt_then_id_up_to_the_limit(
    store: SqliteStore,
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


async def test_due_ties_are_broken_by_id(store: SqliteStore) -> None:
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


async def test_next_due_at_is_the_earliest_pending_row(store: SqliteStore) -> None:
    assert await store.outbox.next_due_at() is None
    ids = await pending_rows(store, 3)
    assert await store.outbox.next_due_at() == T0
    await store.outbox.mark_delivered(ids[0], T0)
    assert await store.outbox.next_due_at() == T0 + timedelta(seconds=1)
    await store.outbox.mark_dead(ids[1], attempts=20, error="gave up")
    assert await store.outbox.next_due_at() == T0 + timedelta(seconds=2)
    await store.outbox.mark_delivered(ids[2], T0)
    assert await store.outbox.next_due_at() is None


async def test_mark_transitions_record_attempts_errors_and_times(store: SqliteStore) -> None:
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


async def test_list_deliveries_filters_by_notifier_and_limits(store: SqliteStore) -> None:
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
    store: SqliteStore, ids: list[str] | None, notifier: str | None, requeued: set[str]
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


async def test_outbox_counts_group_by_notifier_and_status(store: SqliteStore) -> None:
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
    store: SqliteStore,
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
    store: SqliteStore,
) -> None:
    finished = tracked(snap("a", TaskStatus.COMPLETED, at=T0))
    still_listed = replace(
        finished, snapshot=replace(finished.snapshot, observed_at=T0 + timedelta(days=40))
    )
    await record(store, LAZZA, [still_listed])
    assert await store.prune(T0 + timedelta(days=30)) == 0


async def test_list_tasks_orders_by_store_and_task_id_and_filters(store: SqliteStore) -> None:
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


def _hold_write_lock(path: Path, locked: threading.Event, release: Callable[[], None]) -> None:
    """Another writer on the same file (as a second process would be), inside a transaction."""

    async def main() -> None:
        other = SqliteStore(path)
        await other.open()
        try:
            view = await other.load_view(LAZZA)
            conn = other._db()
            conn.execute("BEGIN IMMEDIATE")  # the write lock, held while `release` runs
            locked.set()
            release()
            conn.execute("COMMIT")
            await other.save_poll(PollWrite(replace(view.endpoint, baselined=True)))
            other.flush()
        finally:
            await other.close()

    asyncio.run(main())


async def test_a_concurrent_writer_is_waited_for_within_busy_timeout(
    store: SqliteStore, db_path: Path
) -> None:
    locked = threading.Event()
    # The other writer's transaction lasts a while; the store must wait, not fail.
    writer = threading.Thread(
        target=_hold_write_lock, args=(db_path, locked, lambda: time.sleep(0.3))
    )
    writer.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        await record(store, LINE, [tracked(snap("a"))])
        assert time.monotonic() - started > 0.1
    finally:
        writer.join(10)
    assert (await endpoint_state(store, LAZZA)) is not None
    assert [t.task_id for t in await store.list_tasks()] == ["a"]


async def test_a_writer_holding_the_lock_past_busy_timeout_fails_the_poll_cleanly(
    db_path: Path,
) -> None:
    impatient = SqliteStore(db_path, busy_timeout=0.05)
    await impatient.open()
    locked, release = threading.Event(), threading.Event()
    writer = threading.Thread(
        target=_hold_write_lock, args=(db_path, locked, lambda: release.wait(10))
    )
    writer.start()
    try:
        assert locked.wait(10)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await record(impatient, LINE, [tracked(snap("a"))])
        assert not impatient._db().in_transaction
    finally:
        release.set()
        writer.join(10)
    await record(impatient, LINE, [tracked(snap("a"))])  # usable once the lock is gone
    assert [t.task_id for t in await impatient.list_tasks()] == ["a"]
    await impatient.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///bulkwatch.db", "bulkwatch.db"),
        ("sqlite:///state/bulkwatch.db", "state/bulkwatch.db"),
        ("sqlite:////var/lib/bulkwatch/state.db", "/var/lib/bulkwatch/state.db"),
        ("SQLite:///x.db", "x.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls_name_relative_absolute_or_memory_databases(url: str, path: str) -> None:
    store = open_store_from_url(url)
    assert isinstance(store, SqliteStore)
    assert store.path == path


async def test_a_memory_store_from_a_url_works(tmp_path: Path) -> None:
    store = open_store_from_url("sqlite:///:memory:")
    await store.open()
    try:
        task = tracked(snap("a"))
        await store.save_poll(PollWrite(EndpointState(LINE), upserts=[task]))
        assert await store.list_tasks() == [task]
    finally:
        await store.close()
    assert files_in(tmp_path) == set()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://bw:hunter2@db/bulkwatch", "unsupported state URL scheme 'postgresql'"),
        ("mysql://bw:hunter2@db/bulkwatch", "unsupported state URL scheme 'mysql'"),
        ("bw:hunter2@db", r"unsupported state URL scheme \(none\)"),
        ("sqlite://relative.db", "three slashes"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///state/", "names no database file"),
    ],
)
def test_unusable_state_urls_are_refused_without_echoing_secrets(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        open_store_from_url(url)
    assert "hunter2" not in str(caught.value)
