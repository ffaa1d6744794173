"""How the stores' rows map to bulkwatch's objects, and back, whatever the backend.

Both backends store the same columns in the same order; they differ only in how a datetime
and a set of endpoint names are stored. A backend says that once, in a `RowCodec`, and the
column order and the field-by-field mapping live here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bulkwatch.common.redact import redact
from bulkwatch.model import (
    TERMINAL_STATUSES,
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
    "NO_ENDPOINTS",
    "SELECT_ENDPOINTS",
    "SELECT_HEALTH",
    "SELECT_TASKS",
    "TASK_COLUMNS",
    "Row",
    "RowCodec",
    "prune_delivered",
    "prune_tasks",
]


def _redacted(text: str | None) -> str | None:
    """Text from outside (a platform's error, a task's reason) as stored: no secret in it."""
    return None if text is None else redact(text)


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
SELECT_TASKS = f"SELECT {TASK_COLUMNS} FROM tasks"  # noqa: S608 - constant columns
SELECT_ENDPOINTS = f"SELECT {ENDPOINT_COLUMNS} FROM endpoints"  # noqa: S608 - constant columns
SELECT_HEALTH = f"SELECT {HEALTH_COLUMNS} FROM store_health"  # noqa: S608 - constant columns

_TERMINAL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL_STATUSES))


def prune_tasks(before: str) -> str:
    """The DELETE of the terminal or gone tasks unchanged and unseen since `before` (the
    backend's placeholder for the cutoff).

    A terminal task is only forgotten once it is also out of sight (observed_at old): a task
    still listed by the platform would otherwise come back on the next poll as a "new" task
    and notify again.
    """
    return (
        f"DELETE FROM tasks WHERE changed_at < {before} AND observed_at < {before} "  # noqa: S608
        f"AND (gone OR status IN ({_TERMINAL}))"
    )


def prune_delivered(before: str) -> str:
    """The DELETE of the outbox rows delivered before `before` (a placeholder)."""
    return f"DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < {before}"  # noqa: S608


class Row(Protocol):
    """A row as a driver returns it (a tuple, an `asyncpg.Record`), or a slice of one."""

    def __getitem__(self, index: Any, /) -> Any: ...


# Rows are read and written on every poll; these skip the JSON codec and the Enum call
# machinery for the values nearly every row holds (an int status, no failing endpoint).
_PLATFORMS = {p.value: p for p in Platform}
_STATUSES = {s.value: s for s in TaskStatus}
_DELIVERY_STATUSES = {s.value: s for s in DeliveryStatus}
NO_ENDPOINTS: frozenset[str] = frozenset()


def _raw_status_param(value: str | int | None) -> str:
    return str(value) if type(value) is int else json.dumps(value)


def _raw_status(text: str) -> Any:
    return int(text) if text.isascii() and text.isdigit() else json.loads(text)


@dataclass(frozen=True, slots=True)
class RowCodec:
    """One backend's rows: what is the same is here, what differs is the four functions.

    `time` stores an (aware or naive-UTC) datetime and `read_time` reads a stored, non-null
    one back as an aware UTC datetime; `names` stores a set of endpoint names and
    `read_names` reads one back.
    """

    time: Callable[[datetime], Any]
    read_time: Callable[[Any], datetime]
    names: Callable[[frozenset[str]], Any]
    read_names: Callable[[Any], frozenset[str]]

    def time_or_none(self, value: datetime | None) -> Any:
        """`time`, passing None through."""
        return None if value is None else self.time(value)

    def read_time_or_none(self, value: Any) -> datetime | None:
        """`read_time`, passing None through."""
        return None if value is None else self.read_time(value)

    def task_params(self, task: TrackedTask) -> tuple[Any, ...]:
        """A tracked task as parameters in `TASK_COLUMNS` order."""
        s = task.snapshot
        at, maybe = self.time, self.time_or_none
        return (
            s.store,
            s.platform.value,
            s.task_id,
            s.operation_type,
            s.status.value,
            _raw_status_param(s.raw_status),
            at(s.observed_at),
            s.url,
            s.partial_data_url,
            _redacted(s.error_code),
            _redacted(s.reason),
            s.completed_count,
            maybe(s.created_at),
            maybe(s.completed_at),
            maybe(s.expires_at),
            task.endpoint,
            task.seq,
            at(task.first_seen_at),
            at(task.changed_at),
            task.silent_baseline,
            task.stalled_notified,
            task.expiring_notified,
            task.gone,
        )

    def task_from_row(self, r: Row) -> TrackedTask:
        """A row selected with `TASK_COLUMNS` as a tracked task."""
        at, maybe = self.read_time, self.read_time_or_none
        snapshot = TaskSnapshot(
            platform=_PLATFORMS[r[1]],
            store=r[0],
            task_id=r[2],
            operation_type=r[3],
            status=_STATUSES[r[4]],
            raw_status=_raw_status(r[5]),
            observed_at=at(r[6]),
            url=r[7],
            partial_data_url=r[8],
            error_code=r[9],
            reason=r[10],
            completed_count=r[11],
            created_at=maybe(r[12]),
            completed_at=maybe(r[13]),
            expires_at=maybe(r[14]),
        )
        return TrackedTask(
            snapshot=snapshot,
            endpoint=r[15],
            seq=r[16],
            first_seen_at=at(r[17]),
            changed_at=at(r[18]),
            silent_baseline=bool(r[19]),
            stalled_notified=bool(r[20]),
            expiring_notified=bool(r[21]),
            gone=bool(r[22]),
        )

    def endpoint_params(self, e: EndpointState) -> tuple[Any, ...]:
        """Endpoint state as parameters in `ENDPOINT_COLUMNS` order."""
        k = e.key
        return (
            k.store,
            k.platform.value,
            k.endpoint,
            e.baselined,
            e.consecutive_failures,
            e.current_task_id,
            self.time_or_none(e.last_success_at),
            _redacted(e.last_failure),
        )

    def endpoint_state(self, key: EndpointKey, r: Row) -> EndpointState:
        """An `ENDPOINT_COLUMNS` row without its three key columns as `key`'s state."""
        return EndpointState(
            key=key,
            baselined=bool(r[0]),
            consecutive_failures=r[1],
            current_task_id=r[2],
            last_success_at=self.read_time_or_none(r[3]),
            last_failure=r[4],
        )

    def endpoint_from_row(self, r: Row) -> EndpointState:
        """A row selected with `ENDPOINT_COLUMNS` as endpoint state."""
        return self.endpoint_state(EndpointKey(r[0], _PLATFORMS[r[1]], r[2]), r[3:])

    def health_params(self, h: StoreHealth) -> tuple[Any, ...]:
        """Store health as parameters in `HEALTH_COLUMNS` order."""
        return (h.store, h.platform.value, h.down, h.outage, self.names(h.failing_endpoints))

    def store_health(self, store: str, platform: Platform, r: Row) -> StoreHealth:
        """A `HEALTH_COLUMNS` row without its two key columns as the store's health."""
        return StoreHealth(
            store=store,
            platform=platform,
            down=bool(r[0]),
            outage=r[1],
            failing_endpoints=self.read_names(r[2]),
        )

    def health_from_row(self, r: Row) -> StoreHealth:
        """A row selected with `HEALTH_COLUMNS` as store health."""
        return self.store_health(r[0], _PLATFORMS[r[1]], r[2:])

    def delivery_from_row(self, r: Row) -> Delivery:
        """A row selected with `DELIVERY_COLUMNS` as a delivery."""
        return Delivery(
            id=r[0],
            event_id=r[1],
            notifier=r[2],
            event_type=r[3],
            store=r[4],
            body=bytes(r[5]),
            status=_DELIVERY_STATUSES[r[6]],
            attempts=r[7],
            created_at=self.read_time(r[8]),
            next_attempt_at=self.read_time(r[9]),
            last_error=r[10],
            delivered_at=self.read_time_or_none(r[11]),
        )
