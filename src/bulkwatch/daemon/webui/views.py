"""What the status page and the API show, read through the store protocols and the daemon's
status, one bounded page at a time. Both the JSON handlers and the HTML page call these."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from bulkwatch.config.resolved import ResolvedStore
from bulkwatch.daemon.webui.context import BadParamError, WebContext, decode_cursor, encode_cursor
from bulkwatch.daemon.webui.models import (
    EndpointOut,
    ReplicaOut,
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
from bulkwatch.store.base import DeliveryStatus, TaskCursor, TaskQuery

__all__ = ["store", "stores", "summary", "tasks"]

TROUBLED_LISTED = 100


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
    owner: str | None,
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
        owner=owner,
        endpoints=endpoints,
    )


async def _stores_out(ctx: WebContext, page: Sequence[ResolvedStore]) -> list[StoreOut]:
    names = [s.name for s in page]
    health = {(h.store, h.platform): h for h in await ctx.state.reads.health_of(names)}
    stored: dict[tuple[str, Platform], dict[str, EndpointState]] = {}
    for e in await ctx.state.reads.endpoints_of(names):
        stored.setdefault((e.key.store, e.key.platform), {})[e.key.endpoint] = e
    owners: dict[str, str] = {}
    if ctx.status.replica is not None:  # without replicas nobody holds a lease
        owners = {h.store: h.owner for h in await ctx.state.leases.holders(names)}
    return [
        _store_out(
            ctx,
            s,
            health.get((s.name, s.platform)),
            stored.get((s.name, s.platform), {}),
            owners.get(s.name),
        )
        for s in page
    ]


async def stores(ctx: WebContext, q: StoreQuery) -> StoreList:
    """A page of configured stores by name, with what is stored and scheduled for each."""
    chosen = [s for s in ctx.stores if q.platform is None or s.platform is q.platform]
    start = 0
    if q.cursor is not None:
        (after,) = decode_cursor(q.cursor, (str,))
        start = next((i for i, s in enumerate(chosen) if s.name > after), len(chosen))
    page = chosen[start : start + q.limit]
    more = start + q.limit < len(chosen)
    return StoreList(
        stores=await _stores_out(ctx, page),
        total=len(chosen),
        next_cursor=encode_cursor([page[-1].name]) if more and page else None,
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
        replica=_replica(ctx),
    )


def _replica(ctx: WebContext) -> ReplicaOut | None:
    r = ctx.status.replica
    if r is None:
        return None
    renewed = r.renewed_at
    return ReplicaOut(
        id=r.replica,
        stores_owned=len(ctx.status.owned or ()),
        share=r.share,
        live_replicas=r.live,
        renewal_age_s=None if renewed is None else round(time.monotonic() - renewed, 3),
    )


# --- tasks --------------------------------------------------------------------------------


# The `TaskOut` fields that are the snapshot's, under the same names, and the tracked task's.
_FROM_SNAPSHOT = (
    "store",
    "platform",
    "task_id",
    "operation_type",
    "status",
    "raw_status",
    "completed_count",
    "error_code",
    "reason",
    "created_at",
    "completed_at",
    "expires_at",
    "observed_at",
)
_FROM_TASK = ("endpoint", "first_seen_at", "changed_at", "gone")


def task_out(task: TrackedTask, now: datetime) -> TaskOut:
    s = task.snapshot
    valid = s.status is TaskStatus.COMPLETED and (s.expires_at is None or s.expires_at > now)
    fields = {name: getattr(s, name) for name in _FROM_SNAPSHOT}
    fields.update((name, getattr(task, name)) for name in _FROM_TASK)
    return TaskOut(**fields, result_url=s.url if valid and not task.gone else None)


async def tasks(ctx: WebContext, q: TaskQueryParams) -> TaskList:
    """A page of tasks, newest first; `next_cursor` continues after its last task."""
    after = None
    if q.cursor is not None:
        at, name, platform, task_id = decode_cursor(q.cursor, (str, str, str, str))
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
        cursor = encode_cursor([c.first_seen_at.isoformat(), c.store, c.platform.value, c.task_id])
    return TaskList(tasks=[task_out(t, now) for t in page], next_cursor=cursor)
