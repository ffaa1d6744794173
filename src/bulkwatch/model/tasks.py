"""Tasks as bulkwatch sees them: platforms, statuses, what one poll saw, what is kept.

Plain frozen dataclasses and enums; pydantic stays at the edges (config, API bodies).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["TERMINAL_STATUSES", "Platform", "TaskSnapshot", "TaskStatus", "TrackedTask"]


class Platform(StrEnum):
    SHOPLAZZA = "shoplazza"
    SHOPLINE = "shopline"


class TaskStatus(StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {TaskStatus.CANCELED, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.EXPIRED}
)


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """What one poll saw of one task, normalised across platforms."""

    platform: Platform
    store: str
    task_id: str
    operation_type: str
    status: TaskStatus
    raw_status: str | int | None
    observed_at: datetime
    url: str | None = None
    partial_data_url: str | None = None
    error_code: str | None = None
    reason: str | None = None
    completed_count: int | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TrackedTask:
    """The last known state of one task, as stored between polls."""

    snapshot: TaskSnapshot
    endpoint: str
    seq: int  # change sequence number: 0 for the first observation, +1 per status change
    first_seen_at: datetime
    changed_at: datetime
    silent_baseline: bool = False  # recorded at baseline without an event
    stalled_notified: bool = False
    expiring_notified: bool = False
    gone: bool = False  # Shopline: replaced by another task; no longer polled

    @property
    def task_id(self) -> str:
        return self.snapshot.task_id
