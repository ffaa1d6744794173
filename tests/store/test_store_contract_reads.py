"""The status page's bounded reads, on every backend: recent tasks page by page with every
filter, store health and endpoints by name, troubled stores, recent events and dead
deliveries; and the endpoint notes of `bulkwatch status`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    Platform,
    StoreHealth,
    TaskStatus,
    TrackedTask,
)
from bulkwatch.store.base import OutboxRow, PollWrite, StateStore, TaskCursor, TaskQuery
from helpers.store_support import (
    DEAD,
    LAZZA,
    LINE,
    LINE_MUTATION,
    PENDING,
    T0,
    Backend,
    event_for,
    record,
    snap,
    tracked,
)

SINCE = T0 + timedelta(minutes=10)
STATUSES = (TaskStatus.RUNNING, TaskStatus.COMPLETED, TaskStatus.FAILED)


def task(key: EndpointKey, n: int, status: TaskStatus, minutes: int) -> TrackedTask:
    at = T0 + timedelta(minutes=minutes)
    endpoint = "tasks" if key.platform is Platform.SHOPLAZZA else "QUERY"
    return tracked(snap(f"{key.store}-{n}", status, key=key, at=at), endpoint=endpoint)


async def seeded(store: StateStore) -> list[TrackedTask]:
    """30 tasks over two stores, a minute apart, some sharing a first-seen time."""
    # Pairs share a minute: the store, platform and id break the tie.
    tasks = [task(key, n, STATUSES[n % 3], minutes=n) for n in range(15) for key in (LAZZA, LINE)]
    for key in (LAZZA, LINE):
        await record(store, key, [t for t in tasks if t.snapshot.store == key.store])
    return tasks


def newest_first(tasks: list[TrackedTask]) -> list[str]:
    def key(t: TrackedTask) -> tuple[str, str, str, str]:
        s = t.snapshot
        return (t.first_seen_at.isoformat(), s.store, s.platform.value, s.task_id)

    return [t.task_id for t in sorted(tasks, key=key, reverse=True)]


async def pages(store: StateStore, query: TaskQuery) -> list[list[str]]:
    """Every page of `query`, following the cursor of each page's last task."""
    out: list[list[str]] = []
    while True:
        page = await store.reads.recent_tasks(query)
        if not page:
            return out
        out.append([t.task_id for t in page])
        query = replace(query, after=TaskCursor.of(page[-1]))


@pytest.mark.parametrize(
    ("filters", "wanted"),
    [
        ({}, lambda t: True),
        ({"store": "lazza-main"}, lambda t: t.snapshot.store == "lazza-main"),
        ({"status": TaskStatus.FAILED}, lambda t: t.snapshot.status is TaskStatus.FAILED),
        ({"platform": Platform.SHOPLINE}, lambda t: t.snapshot.platform is Platform.SHOPLINE),
        ({"since": SINCE}, lambda t: t.first_seen_at >= SINCE),
        (
            {"store": "line-main", "status": TaskStatus.RUNNING},
            lambda t: t.snapshot.store == "line-main" and t.snapshot.status is TaskStatus.RUNNING,
        ),
    ],
)
async def test_recent_tasks_pages_newest_first_without_gaps_or_repeats(
    store: StateStore, filters: dict[str, object], wanted: object
) -> None:
    tasks = await seeded(store)
    expected = newest_first([t for t in tasks if wanted(t)])  # type: ignore[operator]
    got = await pages(store, TaskQuery(limit=4, **filters))  # type: ignore[arg-type]
    assert [n for page in got for n in page] == expected
    assert all(len(page) == 4 for page in got[:-1])
    assert expected  # every filter above matches something


async def test_recent_tasks_of_an_unknown_store_is_empty(store: StateStore) -> None:
    await seeded(store)
    assert await store.reads.recent_tasks(TaskQuery(limit=10, store="nope")) == []


async def test_health_and_endpoints_of_named_stores_only(store: StateStore) -> None:
    await seeded(store)
    down = StoreHealth("line-main", Platform.SHOPLINE, down=True, outage=1)
    await record(store, LINE, health=down)
    assert await store.reads.health_of(["line-main", "nope"]) == [down]
    assert [h.store for h in await store.reads.health_of(["line-main", "lazza-main"])] == [
        "lazza-main",
        "line-main",
    ]
    endpoints = await store.reads.endpoints_of(["lazza-main"])
    assert [e.key for e in endpoints] == [LAZZA]
    assert await store.reads.endpoints_of([]) == []
    # More names than one statement takes.
    many = [f"s{i}" for i in range(1200)] + ["line-main"]
    assert [e.key for e in await store.reads.endpoints_of(many)] == [LINE]


async def test_troubled_stores_counts_down_and_failing_and_lists_the_first(
    store: StateStore,
) -> None:
    for i in range(5):
        key = EndpointKey(f"s{i}", Platform.SHOPLINE, "QUERY")
        health = StoreHealth(
            key.store,
            key.platform,
            down=i < 2,
            failing_endpoints=frozenset({"QUERY"}) if i < 4 else frozenset(),
        )
        await store.save_poll(PollWrite(endpoint=EndpointState(key), health=health))
    troubled = await store.reads.troubled_stores(limit=3)
    assert (troubled.down, troubled.failing) == (2, 2)
    assert [h.store for h in troubled.stores] == ["s0", "s1", "s2"]
    assert troubled.stores[0].down
    healed = StoreHealth("s0", Platform.SHOPLINE)
    key = EndpointKey("s0", Platform.SHOPLINE, "QUERY")
    await store.save_poll(PollWrite(endpoint=EndpointState(key), health=healed))
    troubled = await store.reads.troubled_stores(limit=10)
    assert (troubled.down, troubled.failing) == (1, 2)
    assert [h.store for h in troubled.stores] == ["s1", "s2", "s3"]


async def test_recent_events_returns_whole_events_newest_first_page_by_page(
    store: StateStore,
) -> None:
    tasks = [tracked(snap(f"t{i}", at=T0 + timedelta(seconds=i))) for i in range(7)]
    for t in tasks:  # one poll each: events in order t0 .. t6, two notifiers each
        await record(store, LINE, [t], [event_for(t, t.first_seen_at)])
    seen: list[str] = []
    before = None
    while True:
        rows = await store.outbox.recent_events(3, before=before)
        if not rows:
            break
        events = list(dict.fromkeys(d.event_id for d in rows))
        assert len(events) <= 3
        for event in events:  # both notifiers of every event, by id
            ids = [d.id for d in rows if d.event_id == event]
            assert [d.notifier for d in rows if d.event_id == event] == ["hook", "slack"]
            assert ids == sorted(ids)
        seen.extend(events)
        before = min(d.id for d in rows)
    newest = [event_for(t, t.first_seen_at).id for t in reversed(tasks)]
    assert seen == newest


async def test_dead_deliveries_page_after_an_id(store: StateStore) -> None:
    tasks = [tracked(snap(f"t{i}", at=T0 + timedelta(seconds=i))) for i in range(5)]
    await record(store, LINE, tasks, [event_for(t) for t in tasks], route=lambda e: ["hook"])
    for d in await store.outbox.list_deliveries(PENDING):
        await store.outbox.mark_dead(d.id, attempts=3, error="HTTP 500")
    first = await store.outbox.list_deliveries(DEAD, limit=2)
    second = await store.outbox.list_deliveries(DEAD, limit=2, after=first[-1].id)
    rest = await store.outbox.list_deliveries(DEAD, limit=2, after=second[-1].id)
    ids = [d.id for d in first + second + rest]
    assert ids == sorted(set(ids))
    assert len(ids) == 5


async def notes_write(store: StateStore, key: EndpointKey, *notes: tuple[str, str]) -> None:
    """A poll of `key` that changes only its notes."""
    view = await store.load_view(key)
    await store.save_poll(PollWrite(endpoint=view.endpoint, notes=notes))


async def test_endpoint_notes_are_set_replaced_and_removed_with_the_poll(
    store: StateStore,
) -> None:
    await notes_write(store, LINE, ("unverified", "404 and never a task"), ("list", "long"))
    await notes_write(store, LAZZA, ("list", "12,000 entries"))
    await notes_write(store, LINE_MUTATION, ("list", "x"), ("list", ""))  # the last one wins
    assert await store.list_notes() == [
        ("lazza-main", "tasks", "list", "12,000 entries"),
        ("line-main", "QUERY", "list", "long"),
        ("line-main", "QUERY", "unverified", "404 and never a task"),
    ]
    await notes_write(store, LINE, ("unverified", ""), ("list", "longer"))
    assert await store.list_notes("line-main") == [("line-main", "QUERY", "list", "longer")]
    await notes_write(store, LINE, ("gone", ""))  # removing a note never set: nothing happens
    assert await store.list_notes("nope") == []
    assert len(await store.list_notes()) == 2


async def test_notes_commit_with_the_rest_of_the_poll_or_not_at_all(
    backend: Backend, store: StateStore
) -> None:
    await notes_write(store, LINE, ("list", "long"))
    event = event_for(tracked(snap("a")))
    view = await store.load_view(LINE)
    # The outbox row breaks NOT NULL: the whole write fails, its notes with it.
    broken = OutboxRow(event.id, "hook", event.type, event.store, None, event.time)  # type: ignore[arg-type]
    write = PollWrite(view.endpoint, notes=[("list", ""), ("unverified", "404")], outbox=[broken])
    with pytest.raises(backend.integrity_error):
        await store.save_poll(write)
    assert await store.list_notes() == [("line-main", "QUERY", "list", "long")]
