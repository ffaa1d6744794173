"""Sample tasks, events and endpoints of the store tests, and `record`: one poll's outcome
written the way a poll writes it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from bulkwatch.model import (
    EndpointKey,
    EndpointView,
    Event,
    EventType,
    Platform,
    StoreHealth,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
    encode_cloudevent,
    task_event,
)
from bulkwatch.store.base import DeliveryStatus, OutboxRow, PollWrite
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
