"""The tracker's clocks: when a task can stall, when its expiry warning is due, and when a
stored observation is refreshed. One definition each, shared by the tracker (which fires them)
and the unchanged-poll rule (which must know when they could fire), so the two never disagree."""

from __future__ import annotations

from datetime import datetime, timedelta

from bulkwatch.model import TaskStatus, TrackedTask

__all__ = ["REFRESH_SEEN", "stall_started", "warnable_expiry"]

# A task shown unchanged still gets its `observed_at` written once a day.
REFRESH_SEEN = timedelta(days=1)
_STALLABLE = frozenset({TaskStatus.CREATED, TaskStatus.RUNNING})


def stall_started(task: TrackedTask) -> datetime | None:
    """When the task's stall clock started; None when it cannot stall (any more)."""
    snap = task.snapshot
    if snap.status in _STALLABLE and not task.stalled_notified:
        return snap.created_at or task.first_seen_at
    return None


def warnable_expiry(task: TrackedTask) -> datetime | None:
    """When the task's result expires, if an expiry warning may still be sent for it."""
    snap = task.snapshot
    if (
        snap.status is TaskStatus.COMPLETED
        and snap.expires_at is not None
        and not task.expiring_notified
        and not task.silent_baseline
    ):
        return snap.expires_at
    return None
