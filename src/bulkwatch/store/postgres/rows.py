"""How the PostgreSQL store's rows map to bulkwatch's objects, and back.

Datetimes are `timestamptz`: stored to the microsecond, read back as aware UTC datetimes.
A naive datetime is UTC throughout bulkwatch; the driver would take it for local time, so
every one is made aware before it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from asyncpg import Record

from bulkwatch.common.redact import redact
from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    Platform,
    StoreHealth,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
)
from bulkwatch.store.base import Delivery, DeliveryStatus

__all__ = [
    "DELIVERY_COLUMNS",
    "ENDPOINT_COLUMNS",
    "HEALTH_COLUMNS",
    "TASK_COLUMNS",
    "delivery_from_row",
    "endpoint_from_row",
    "endpoint_params",
    "health_from_row",
    "health_params",
    "task_from_row",
    "task_params",
    "utc",
    "utc_or_none",
]

TASK_COLUMNS = (
    "store, platform, task_id, operation_type, status, raw_status, observed_at, url, "
    "partial_data_url, error_code, reason, completed_count, created_at, completed_at, "
    "expires_at, endpoint, seq, first_seen_at, changed_at, silent_baseline, stalled_notified, "
    "expiring_notified, gone"
)
ENDPOINT_COLUMNS = (
    "store, platform, endpoint, baselined, consecutive_failures, current_task_id, "
    "last_success_at, last_failure"
)
HEALTH_COLUMNS = "store, platform, down, outage, failing_endpoints"
DELIVERY_COLUMNS = (
    "id, event_id, notifier, event_type, store, body, status, attempts, created_at, "
    "next_attempt_at, last_error, delivered_at"
)

# A row as the driver returns it, or a slice of one.
Row = Record | Sequence[Any]

_PLATFORMS = {p.value: p for p in Platform}
_STATUSES = {s.value: s for s in TaskStatus}
_DELIVERY_STATUSES = {s.value: s for s in DeliveryStatus}
_NO_ENDPOINTS: frozenset[str] = frozenset()


def utc(value: datetime) -> datetime:
    """`value` made aware: a naive datetime is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def utc_or_none(value: datetime | None) -> datetime | None:
    """`utc`, passing None through."""
    return None if value is None else utc(value)


def _raw_status_param(value: str | int | None) -> str:
    return str(value) if type(value) is int else json.dumps(value)


def _raw_status(text: str) -> Any:
    return int(text) if text.isascii() and text.isdigit() else json.loads(text)


def health_params(h: StoreHealth) -> tuple[Any, ...]:
    """Store health as parameters in `HEALTH_COLUMNS` order."""
    return (h.store, h.platform.value, h.down, h.outage, sorted(h.failing_endpoints))


def _redacted(text: str | None) -> str | None:
    """Text from outside (a platform's error, a task's reason) as stored: no secret in it."""
    return None if text is None else redact(text)


def endpoint_params(e: EndpointState) -> tuple[Any, ...]:
    """Endpoint state as parameters in `ENDPOINT_COLUMNS` order."""
    k = e.key
    return (
        k.store,
        k.platform.value,
        k.endpoint,
        e.baselined,
        e.consecutive_failures,
        e.current_task_id,
        utc_or_none(e.last_success_at),
        _redacted(e.last_failure),
    )


def task_params(task: TrackedTask) -> tuple[Any, ...]:
    """A tracked task as parameters in `TASK_COLUMNS` order."""
    s = task.snapshot
    return (
        s.store,
        s.platform.value,
        s.task_id,
        s.operation_type,
        s.status.value,
        _raw_status_param(s.raw_status),
        utc(s.observed_at),
        s.url,
        s.partial_data_url,
        _redacted(s.error_code),
        _redacted(s.reason),
        s.completed_count,
        utc_or_none(s.created_at),
        utc_or_none(s.completed_at),
        utc_or_none(s.expires_at),
        task.endpoint,
        task.seq,
        utc(task.first_seen_at),
        utc(task.changed_at),
        task.silent_baseline,
        task.stalled_notified,
        task.expiring_notified,
        task.gone,
    )


def task_from_row(r: Row) -> TrackedTask:
    """A row selected with `TASK_COLUMNS` as a tracked task."""
    snapshot = TaskSnapshot(
        platform=_PLATFORMS[r[1]],
        store=r[0],
        task_id=r[2],
        operation_type=r[3],
        status=_STATUSES[r[4]],
        raw_status=_raw_status(r[5]),
        observed_at=r[6],
        url=r[7],
        partial_data_url=r[8],
        error_code=r[9],
        reason=r[10],
        completed_count=r[11],
        created_at=r[12],
        completed_at=r[13],
        expires_at=r[14],
    )
    return TrackedTask(
        snapshot=snapshot,
        endpoint=r[15],
        seq=r[16],
        first_seen_at=r[17],
        changed_at=r[18],
        silent_baseline=r[19],
        stalled_notified=r[20],
        expiring_notified=r[21],
        gone=r[22],
    )


def endpoint_from_row(r: Row) -> EndpointState:
    """A row selected with `ENDPOINT_COLUMNS` as endpoint state."""
    return EndpointState(
        key=EndpointKey(r[0], _PLATFORMS[r[1]], r[2]),
        baselined=r[3],
        consecutive_failures=r[4],
        current_task_id=r[5],
        last_success_at=r[6],
        last_failure=r[7],
    )


def health_from_row(r: Row) -> StoreHealth:
    """A row selected with `HEALTH_COLUMNS` as store health."""
    return StoreHealth(
        store=r[0],
        platform=_PLATFORMS[r[1]],
        down=r[2],
        outage=r[3],
        failing_endpoints=frozenset(r[4]) if r[4] else _NO_ENDPOINTS,
    )


def delivery_from_row(r: Row) -> Delivery:
    """A row selected with `DELIVERY_COLUMNS` as a delivery."""
    return Delivery(
        id=r[0],
        event_id=r[1],
        notifier=r[2],
        event_type=r[3],
        store=r[4],
        body=r[5],
        status=_DELIVERY_STATUSES[r[6]],
        attempts=r[7],
        created_at=r[8],
        next_attempt_at=r[9],
        last_error=r[10],
        delivered_at=r[11],
    )
