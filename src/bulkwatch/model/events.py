"""Events: their types, stable ids, the `data` payload, and the CloudEvents JSON envelope."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bulkwatch.model.tasks import Platform, TaskSnapshot, TaskStatus
from bulkwatch.model.times import as_utc

__all__ = [
    "Event",
    "EventType",
    "encode_cloudevent",
    "event_id",
    "isoformat",
    "store_event",
    "task_event",
]


class EventType(StrEnum):
    """Every event bulkwatch sends. The values are the CloudEvents `type` (a contract)."""

    TASK_CREATED = "bulkwatch.task.created"
    TASK_RUNNING = "bulkwatch.task.running"
    TASK_CANCELING = "bulkwatch.task.canceling"
    TASK_CANCELED = "bulkwatch.task.canceled"
    TASK_COMPLETED = "bulkwatch.task.completed"
    TASK_FAILED = "bulkwatch.task.failed"
    TASK_EXPIRED = "bulkwatch.task.expired"
    TASK_UNKNOWN = "bulkwatch.task.unknown"
    TASK_SUPERSEDED = "bulkwatch.task.superseded"
    TASK_STALLED = "bulkwatch.task.stalled"
    TASK_EXPIRING = "bulkwatch.task.expiring"
    STORE_DOWN = "bulkwatch.store.down"
    STORE_UP = "bulkwatch.store.up"

    @classmethod
    def for_status(cls, status: TaskStatus) -> EventType:
        """The event that announces a task reaching `status`."""
        return cls(f"bulkwatch.task.{status.value.lower()}")

    @property
    def status(self) -> TaskStatus | None:
        """The status a status-change event announces; None for the others."""
        return _STATUS_OF.get(self)


_STATUS_OF = {EventType.for_status(status): status for status in TaskStatus}


@dataclass(frozen=True, slots=True)
class Event:
    """One change to tell the world about; serialised as a CloudEvent."""

    id: str
    type: EventType
    store: str
    platform: Platform
    subject: str
    time: datetime
    data: dict[str, Any]


def event_id(*parts: str | int) -> str:
    """A deterministic id: the same change always hashes to the same id."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:32]


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def task_data(snapshot: TaskSnapshot, previous: TaskStatus | None) -> dict[str, Any]:
    return {
        "store": snapshot.store,
        "platform": snapshot.platform.value,
        "task_id": snapshot.task_id,
        "operation_type": snapshot.operation_type,
        "status": snapshot.status.value,
        "previous_status": previous.value if previous is not None else None,
        "raw_status": snapshot.raw_status,
        "url": snapshot.url or None,
        "partial_data_url": snapshot.partial_data_url or None,
        "error_code": snapshot.error_code,
        "reason": snapshot.reason,
        "completed_count": snapshot.completed_count,
        "created_at": isoformat(snapshot.created_at),
        "completed_at": isoformat(snapshot.completed_at),
        "expires_at": isoformat(snapshot.expires_at),
        "observed_at": isoformat(snapshot.observed_at),
    }


def task_event(
    event_type: EventType,
    snapshot: TaskSnapshot,
    *,
    seq: int,
    previous: TaskStatus | None,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> Event:
    """An event about one task; its id hashes (store, platform, task, seq, type)."""
    data = task_data(snapshot, previous)
    if extra:
        data.update(extra)
    return Event(
        id=event_id(snapshot.store, snapshot.platform.value, snapshot.task_id, seq, event_type),
        type=event_type,
        store=snapshot.store,
        platform=snapshot.platform,
        subject=f"{snapshot.store}/{snapshot.task_id}",
        time=now,
        data=data,
    )


def store_event(
    event_type: EventType,
    *,
    store: str,
    platform: Platform,
    outage: int,
    now: datetime,
    reason: str,
    extra: dict[str, Any] | None = None,
) -> Event:
    """An event about a whole store; its id hashes (store, outage number, type)."""
    data: dict[str, Any] = {"store": store, "platform": platform.value, "reason": reason}
    if extra:
        data.update(extra)
    return Event(
        id=event_id(store, outage, event_type),
        type=event_type,
        store=store,
        platform=platform,
        subject=store,
        time=now,
        data=data,
    )


def encode_cloudevent(event: Event, instance: str) -> bytes:
    """The CloudEvents 1.0 structured-mode JSON body of an event."""
    envelope = {
        "specversion": "1.0",
        "id": event.id,
        "source": f"bulkwatch/{instance}",
        "type": event.type,
        "subject": event.subject,
        "time": isoformat(event.time),
        "datacontenttype": "application/json",
        "data": event.data,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
