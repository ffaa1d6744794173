"""The SQLite schema as the store uses it: `migrate` brings a file to the current version (the
steps are in `migrations`), and rows map to objects and back.

Datetimes are stored as fixed-width UTC ISO strings (`2026-11-23T10:00:00.000000+00:00`): they
round-trip to the microsecond, sort and compare correctly as text, and stay readable in the
`sqlite3` shell when an operator inspects the outbox.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from bulkwatch.common.redact import redact
from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    Platform,
    StoreHealth,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
    as_utc,
)
from bulkwatch.store.base import Delivery, DeliveryStatus, SchemaTooNewError
from bulkwatch.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "DELIVERY_COLUMNS",
    "TASK_COLUMNS",
    "SchemaTooNewError",
    "delivery_from_row",
    "dt",
    "dt_required",
    "endpoint_from_row",
    "endpoint_params",
    "health_from_row",
    "health_params",
    "migrate",
    "task_from_row",
    "task_params",
    "ts",
    "ts_or_none",
]

TASK_COLUMNS = (
    "store, platform, task_id, operation_type, status, raw_status, observed_at, url, "
    "partial_data_url, error_code, reason, completed_count, created_at, completed_at, "
    "expires_at, endpoint, seq, first_seen_at, changed_at, silent_baseline, stalled_notified, "
    "expiring_notified, gone"
)
DELIVERY_COLUMNS = (
    "id, event_id, notifier, event_type, store, body, status, attempts, created_at, "
    "next_attempt_at, last_error, delivered_at"
)


def ts(value: datetime) -> str:
    """The stored form of a datetime: fixed-width UTC ISO 8601, microseconds included."""
    # The fixed-width form is what makes text comparison in SQL agree with time order.
    return as_utc(value).astimezone(UTC).isoformat(timespec="microseconds")


def ts_or_none(value: datetime | None) -> str | None:
    """`ts`, passing None through."""
    return None if value is None else ts(value)


def dt(value: str | None) -> datetime | None:
    """A stored datetime read back as an aware UTC datetime; None passes through."""
    return None if value is None else datetime.fromisoformat(value)


def dt_required(value: str) -> datetime:
    """A stored, non-null datetime read back as an aware UTC datetime."""
    return datetime.fromisoformat(value)


# Rows are read and written on every poll; these skip the JSON codec and the Enum call
# machinery for the values nearly every row holds (an int status, no failing endpoint).
_PLATFORMS = {p.value: p for p in Platform}
_STATUSES = {s.value: s for s in TaskStatus}
_NO_ENDPOINTS: frozenset[str] = frozenset()


def _raw_status_param(value: str | int | None) -> str:
    return str(value) if type(value) is int else json.dumps(value)


def _raw_status(text: str) -> Any:
    return int(text) if text.isascii() and text.isdigit() else json.loads(text)


def _redacted(text: str | None) -> str | None:
    """Text from outside (a platform's error, a task's reason) as stored: no secret in it."""
    return None if text is None else redact(text)


def health_params(h: StoreHealth) -> tuple[Any, ...]:
    """Store health as (store, platform, down, outage, failing_endpoints) parameters."""
    failing = json.dumps(sorted(h.failing_endpoints)) if h.failing_endpoints else "[]"
    return (h.store, h.platform.value, h.down, h.outage, failing)


def endpoint_params(e: EndpointState) -> tuple[Any, ...]:
    """Endpoint state as parameters in `endpoints` column order."""
    k = e.key
    return (
        k.store,
        k.platform.value,
        k.endpoint,
        e.baselined,
        e.consecutive_failures,
        e.current_task_id,
        ts_or_none(e.last_success_at),
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
        ts(s.observed_at),
        s.url,
        s.partial_data_url,
        _redacted(s.error_code),
        _redacted(s.reason),
        s.completed_count,
        ts_or_none(s.created_at),
        ts_or_none(s.completed_at),
        ts_or_none(s.expires_at),
        task.endpoint,
        task.seq,
        ts(task.first_seen_at),
        ts(task.changed_at),
        task.silent_baseline,
        task.stalled_notified,
        task.expiring_notified,
        task.gone,
    )


def task_from_row(r: Sequence[Any]) -> TrackedTask:
    """A row selected with `TASK_COLUMNS` as a tracked task."""
    snapshot = TaskSnapshot(
        platform=_PLATFORMS[r[1]],
        store=r[0],
        task_id=r[2],
        operation_type=r[3],
        status=_STATUSES[r[4]],
        raw_status=_raw_status(r[5]),
        observed_at=dt_required(r[6]),
        url=r[7],
        partial_data_url=r[8],
        error_code=r[9],
        reason=r[10],
        completed_count=r[11],
        created_at=dt(r[12]),
        completed_at=dt(r[13]),
        expires_at=dt(r[14]),
    )
    return TrackedTask(
        snapshot=snapshot,
        endpoint=r[15],
        seq=r[16],
        first_seen_at=dt_required(r[17]),
        changed_at=dt_required(r[18]),
        silent_baseline=bool(r[19]),
        stalled_notified=bool(r[20]),
        expiring_notified=bool(r[21]),
        gone=bool(r[22]),
    )


def delivery_from_row(r: Sequence[Any]) -> Delivery:
    """A row selected with `DELIVERY_COLUMNS` as a delivery."""
    return Delivery(
        id=r[0],
        event_id=r[1],
        notifier=r[2],
        event_type=r[3],
        store=r[4],
        body=bytes(r[5]),
        status=DeliveryStatus(r[6]),
        attempts=r[7],
        created_at=dt_required(r[8]),
        next_attempt_at=dt_required(r[9]),
        last_error=r[10],
        delivered_at=dt(r[11]),
    )


def endpoint_from_row(key: EndpointKey, r: Sequence[Any]) -> EndpointState:
    """An `endpoints` row (without its key columns) as endpoint state."""
    return EndpointState(
        key=key,
        baselined=bool(r[0]),
        consecutive_failures=r[1],
        current_task_id=r[2],
        last_success_at=dt(r[3]),
        last_failure=r[4],
    )


def health_from_row(store: str, platform: Platform, r: Sequence[Any]) -> StoreHealth:
    """A `store_health` row (down, outage, failing_endpoints) as store health."""
    return StoreHealth(
        store=store,
        platform=platform,
        down=bool(r[0]),
        outage=r[1],
        failing_endpoints=_NO_ENDPOINTS if r[2] == "[]" else frozenset(json.loads(r[2])),
    )


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: commit on success, roll back on any exception and re-raise it.

    IMMEDIATE takes the write lock before the first read, so nothing read inside can change
    under us (another process on the file) before we write. `conn` must be in autocommit mode
    (`isolation_level=None`).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_version(found: int) -> None:
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the state database has schema version {found}, but this bulkwatch only "
            f"knows versions up to {SCHEMA_VERSION}; upgrade bulkwatch"
        )


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to `SCHEMA_VERSION` in one transaction; return the version found.

    The version is read inside the write transaction, so two processes starting together on
    a fresh file cannot both create the tables.
    """
    with _immediate(conn):
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        _check_version(found)
        for step in MIGRATIONS[found:]:
            step(conn)
        if found != SCHEMA_VERSION:
            # user_version lives in the database header, so it commits with the tables.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    return int(found)
