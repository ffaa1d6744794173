"""What the status page and the API show, read through the store protocols and the daemon's
status, one bounded page at a time. Both the JSON handlers and the HTML page call these."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from bulkwatch.config.resolved import ResolvedStore
from bulkwatch.daemon.status import DaemonStatus
from bulkwatch.daemon.webui.models import (
    DeadDeliveryOut,
    DeadList,
    DeadQuery,
    DeliveryOut,
    EndpointOut,
    EventList,
    EventOut,
    EventQuery,
    StoreList,
    StoreOut,
    StoreQuery,
    StoreState,
    Summary,
    TaskList,
    TaskOut,
    TaskQueryParams,
)
from bulkwatch.model import EndpointKey, EndpointState, Platform, StoreHealth, TrackedTask
from bulkwatch.model.tasks import TaskStatus
from bulkwatch.store.base import Delivery, DeliveryStatus, StateStore, TaskCursor, TaskQuery
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["BadParamError", "WebContext", "dead", "events", "store", "stores", "summary", "tasks"]

TROUBLED_LISTED = 100


class BadParamError(ValueError):
    """A query parameter that parsed but means nothing here (a cursor from elsewhere)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WebContext:
    """Everything the page and the API read, handed over by web.py (never the engine)."""

    state: StateStore
    status: DaemonStatus
    clock: Callable[[], datetime]
    metrics: Metrics
    api_token: SecretStr | None
    wake_dispatcher: Callable[[], None]

    @property
    def stores(self) -> tuple[ResolvedStore, ...]:
        """The configured stores by name, as of the last config reload."""
        return self.status.configured

    def configured(self, name: str) -> ResolvedStore | None:
        return next((s for s in self.stores if s.name == name), None)


# --- cursors: opaque to clients, a JSON list inside ---------------------------------------


def _encode(value: list[Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, shape: Sequence[type]) -> list[Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise BadParamError("cursor", "not a cursor this API handed out") from None
    if not (
        isinstance(value, list)
        and len(value) == len(shape)
        and all(isinstance(v, t) for v, t in zip(value, shape, strict=True))
    ):
        raise BadParamError("cursor", "not a cursor of this list")
    return value


# --- stores -------------------------------------------------------------------------------


def _state(health: StoreHealth | None, endpoints: list[EndpointState]) -> StoreState:
    if health is None and not endpoints:
        return "pending"
    if health is not None and health.down:
        return "down"
    failing = health.failing_endpoints if health is not None else frozenset()
    if failing or any(e.consecutive_failures for e in endpoints):
        return "failing"
    return "up"


def _latest(values: Sequence[datetime | None]) -> datetime | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _store_out(
    ctx: WebContext,
    conf: ResolvedStore,
    health: StoreHealth | None,
    stored: dict[str, EndpointState],
) -> StoreOut:
    endpoints = []
    for name in conf.endpoints:
        key = EndpointKey(conf.name, conf.platform, name)
        e = stored.get(name, EndpointState(key))
        endpoints.append(
            EndpointOut(
                endpoint=name,
                failing=e.consecutive_failures > 0,
                consecutive_failures=e.consecutive_failures,
                last_poll_at=ctx.status.last_poll.get(key),
                last_success_at=e.last_success_at,
                last_error=e.last_failure if e.consecutive_failures else None,
                next_poll_at=ctx.status.next_run(str(key)),
            )
        )
    state = _state(health, list(stored.values()))
    next_polls = [e.next_poll_at for e in endpoints if e.next_poll_at is not None]
    errors = [e.last_error for e in endpoints if e.last_error]
    return StoreOut(
        name=conf.name,
        platform=conf.platform,
        state=state,
        up=state in ("up", "pending"),
        interval_s=conf.interval,
        last_poll_at=_latest([e.last_poll_at for e in endpoints]),
        last_success_at=_latest([e.last_success_at for e in endpoints]),
        last_error=errors[0] if errors else None,
        next_poll_at=min(next_polls) if next_polls else None,
        backoff_until=ctx.status.backoff_until(conf.name),
        endpoints=endpoints,
    )


async def _stores_out(ctx: WebContext, page: Sequence[ResolvedStore]) -> list[StoreOut]:
    names = [s.name for s in page]
    health = {(h.store, h.platform): h for h in await ctx.state.reads.health_of(names)}
    stored: dict[tuple[str, Platform], dict[str, EndpointState]] = {}
    for e in await ctx.state.reads.endpoints_of(names):
        stored.setdefault((e.key.store, e.key.platform), {})[e.key.endpoint] = e
    return [
        _store_out(ctx, s, health.get((s.name, s.platform)), stored.get((s.name, s.platform), {}))
        for s in page
    ]


async def stores(ctx: WebContext, q: StoreQuery) -> StoreList:
    """A page of configured stores by name, with what is stored and scheduled for each."""
    chosen = [s for s in ctx.stores if q.platform is None or s.platform is q.platform]
    start = 0
    if q.cursor is not None:
        (after,) = _decode(q.cursor, (str,))
        start = next((i for i, s in enumerate(chosen) if s.name > after), len(chosen))
    page = chosen[start : start + q.limit]
    more = start + q.limit < len(chosen)
    return StoreList(
        stores=await _stores_out(ctx, page),
        total=len(chosen),
        next_cursor=_encode([page[-1].name]) if more and page else None,
    )


async def store(ctx: WebContext, name: str) -> StoreOut | None:
    conf = ctx.configured(name)
    return None if conf is None else (await _stores_out(ctx, [conf]))[0]


async def summary(ctx: WebContext) -> Summary:
    troubled = await ctx.state.reads.troubled_stores(TROUBLED_LISTED)
    counts = await ctx.state.outbox.outbox_counts()
    pending = sum(n for (_, s), n in counts.items() if s is DeliveryStatus.PENDING)
    dead = sum(n for (_, s), n in counts.items() if s is DeliveryStatus.DEAD)
    return Summary(
        ok=not (troubled.down or troubled.failing or dead),
        instance=ctx.status.instance,
        stores=len(ctx.stores),
        down=troubled.down,
        failing=troubled.failing,
        pending=pending,
        dead=dead,
        troubled=[h.store for h in troubled.stores],
        last_poll_at=max(ctx.status.last_poll.values(), default=None),
    )


# --- tasks --------------------------------------------------------------------------------


def task_out(task: TrackedTask, now: datetime) -> TaskOut:
    s = task.snapshot
    valid = s.status is TaskStatus.COMPLETED and (s.expires_at is None or s.expires_at > now)
    return TaskOut(
        store=s.store,
        platform=s.platform,
        task_id=s.task_id,
        endpoint=task.endpoint,
        operation_type=s.operation_type,
        status=s.status,
        raw_status=s.raw_status,
        completed_count=s.completed_count,
        error_code=s.error_code,
        reason=s.reason,
        created_at=s.created_at,
        completed_at=s.completed_at,
        expires_at=s.expires_at,
        result_url=s.url if valid and not task.gone else None,
        first_seen_at=task.first_seen_at,
        changed_at=task.changed_at,
        observed_at=s.observed_at,
        gone=task.gone,
    )


async def tasks(ctx: WebContext, q: TaskQueryParams) -> TaskList:
    """A page of tasks, newest first; `next_cursor` continues after its last task."""
    after = None
    if q.cursor is not None:
        at, name, platform, task_id = _decode(q.cursor, (str, str, str, str))
        try:
            after = TaskCursor(datetime.fromisoformat(at), name, Platform(platform), task_id)
        except ValueError:
            raise BadParamError("cursor", "not a cursor of this list") from None
    query = TaskQuery(
        limit=q.limit + 1,  # one more tells whether there is a next page
        store=q.store,
        platform=q.platform,
        status=q.status,
        since=q.since,
        after=after,
    )
    found = await ctx.state.reads.recent_tasks(query)
    page, more = found[: q.limit], len(found) > q.limit
    now = ctx.clock()
    cursor = None
    if more:
        c = TaskCursor.of(page[-1])
        cursor = _encode([c.first_seen_at.isoformat(), c.store, c.platform.value, c.task_id])
    return TaskList(tasks=[task_out(t, now) for t in page], next_cursor=cursor)


# --- events and deliveries ----------------------------------------------------------------


def _delivery_fields(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "notifier": d.notifier,
        "status": d.status,
        "attempts": d.attempts,
        "created_at": d.created_at,
        "next_attempt_at": d.next_attempt_at,
        "delivered_at": d.delivered_at,
        "last_error": d.last_error,
    }


def _event_out(rows: list[Delivery]) -> EventOut:
    first = rows[0]
    try:
        body = json.loads(first.body)
    except ValueError:
        body = {}
    when = body.get("time")
    try:
        time = datetime.fromisoformat(when) if isinstance(when, str) else None
    except ValueError:
        time = None
    data = body.get("data")
    return EventOut(
        id=first.event_id,
        type=first.event_type,
        store=first.store,
        subject=body.get("subject") if isinstance(body.get("subject"), str) else None,
        time=time,
        data=data if isinstance(data, dict) else None,
        deliveries=[DeliveryOut(**_delivery_fields(d)) for d in rows],
    )


async def events(ctx: WebContext, q: EventQuery) -> EventList:
    """The newest events, each with its delivery to every notifier."""
    before = None if q.cursor is None else _decode(q.cursor, (int,))[0]
    rows = await ctx.state.outbox.recent_events(q.limit + 1, before=before)
    grouped: dict[str, list[Delivery]] = {}
    for d in rows:
        grouped.setdefault(d.event_id, []).append(d)
    groups = list(grouped.values())
    page, more = groups[: q.limit], len(groups) > q.limit
    cursor = _encode([min(d.id for d in page[-1])]) if more else None
    return EventList(events=[_event_out(g) for g in page], next_cursor=cursor)


async def dead(ctx: WebContext, q: DeadQuery) -> DeadList:
    """Dead deliveries, oldest first, a page at a time."""
    after = None if q.cursor is None else _decode(q.cursor, (int,))[0]
    rows = await ctx.state.outbox.list_deliveries(
        DeliveryStatus.DEAD, notifier=q.notifier, limit=q.limit + 1, after=after
    )
    page, more = rows[: q.limit], len(rows) > q.limit
    counts = await ctx.state.outbox.outbox_counts()
    total = sum(
        n
        for (notifier, s), n in counts.items()
        if s is DeliveryStatus.DEAD and q.notifier in (None, notifier)
    )
    out = [
        DeadDeliveryOut(
            **_delivery_fields(d), event_id=d.event_id, event_type=d.event_type, store=d.store
        )
        for d in page
    ]
    return DeadList(
        deliveries=out, total=total, next_cursor=_encode([page[-1].id]) if more else None
    )
