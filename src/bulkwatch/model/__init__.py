"""The model: what bulkwatch knows of tasks, polls and events. Pure data; imports nothing else
of bulkwatch but `common`, and everything else may import it."""

from __future__ import annotations

from bulkwatch.model.events import (
    Event,
    EventType,
    encode_cloudevent,
    event_id,
    isoformat,
    store_event,
    task_event,
)
from bulkwatch.model.polls import (
    EndpointKey,
    EndpointState,
    EndpointView,
    FailureKind,
    Listing,
    PollError,
    PollOutcome,
    PollResult,
    StoreHealth,
    Unchanged,
)
from bulkwatch.model.tasks import (
    TERMINAL_STATUSES,
    Platform,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
)
from bulkwatch.model.times import as_utc, utcnow

__all__ = [
    "TERMINAL_STATUSES",
    "EndpointKey",
    "EndpointState",
    "EndpointView",
    "Event",
    "EventType",
    "FailureKind",
    "Listing",
    "Platform",
    "PollError",
    "PollOutcome",
    "PollResult",
    "StoreHealth",
    "TaskSnapshot",
    "TaskStatus",
    "TrackedTask",
    "Unchanged",
    "as_utc",
    "encode_cloudevent",
    "event_id",
    "isoformat",
    "store_event",
    "task_event",
    "utcnow",
]
