"""What the page and the API show of the outbox: recent events with their deliveries, and
dead deliveries, a bounded page at a time."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bulkwatch.daemon.webui.context import WebContext, decode_cursor, encode_cursor
from bulkwatch.daemon.webui.models import (
    DeadDeliveryOut,
    DeadList,
    DeadQuery,
    DeliveryOut,
    EventList,
    EventOut,
    EventQuery,
)
from bulkwatch.store.base import Delivery, DeliveryStatus

__all__ = ["dead", "events"]


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
    before = None if q.cursor is None else decode_cursor(q.cursor, (int,))[0]
    rows = await ctx.state.outbox.recent_events(q.limit + 1, before=before)
    grouped: dict[str, list[Delivery]] = {}
    for d in rows:
        grouped.setdefault(d.event_id, []).append(d)
    groups = list(grouped.values())
    page, more = groups[: q.limit], len(groups) > q.limit
    cursor = encode_cursor([min(d.id for d in page[-1])]) if more else None
    return EventList(events=[_event_out(g) for g in page], next_cursor=cursor)


async def dead(ctx: WebContext, q: DeadQuery) -> DeadList:
    """Dead deliveries, oldest first, a page at a time."""
    after = None if q.cursor is None else decode_cursor(q.cursor, (int,))[0]
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
        deliveries=out, total=total, next_cursor=encode_cursor([page[-1].id]) if more else None
    )
