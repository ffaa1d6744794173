"""The domain model: task statuses, snapshots, tracked state and events.

Plain frozen dataclasses and enums; pydantic stays at the edges (config, API bodies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "TERMINAL_STATUSES",
    "EndpointKey",
    "EndpointState",
    "Event",
    "FailureKind",
    "Platform",
    "PollError",
    "PollResult",
    "StoreHealth",
    "TaskSnapshot",
    "TaskStatus",
    "TrackedTask",
    "Unchanged",
]


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

    @property
    def event_type(self) -> str:
        return f"bulkwatch.task.{self.value.lower()}"


TERMINAL_STATUSES = frozenset(
    {TaskStatus.CANCELED, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.EXPIRED}
)


class FailureKind(StrEnum):
    """Why a poll failed; the `kind` label of `bulkwatch_api_errors_total`."""

    AUTH = "auth"  # 401, or Shoplazza's 400 for bad credentials: the token needs renewing
    FORBIDDEN = "forbidden"  # 403: missing scope
    FROZEN = "frozen"  # 402: the store is frozen
    BLOCKED = "blocked"  # 423, 433-436: security block
    RATE_LIMITED = "rate_limited"  # 429
    CLIENT = "client"  # any other 4xx
    SERVER = "server"  # 5xx
    NETWORK = "network"  # connection refused/reset, DNS
    TIMEOUT = "timeout"
    INVALID_RESPONSE = "invalid_response"  # not JSON, wrong shape, too large


@dataclass(frozen=True, slots=True)
class EndpointKey:
    """One polled endpoint of one store: tracked independently of the store's others."""

    store: str
    platform: Platform
    endpoint: str  # "tasks" (Shoplazza list), "QUERY" / "MUTATION" (Shopline current)

    def __str__(self) -> str:
        return f"{self.store}/{self.endpoint}"


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
class PollResult:
    """A successful poll of one endpoint.

    `exclusive` marks an endpoint that shows at most one current task (Shopline): a different
    id there means the previous task was replaced, not merely paged out of view.
    """

    key: EndpointKey
    tasks: tuple[TaskSnapshot, ...]
    exclusive: bool
    request_id: str | None = None
    http_status: int = 200
    # Entries that were skipped or read with assumptions (a task without an id, a date
    # without offset); the app logs each and counts it as an invalid_response api error.
    problems: tuple[str, ...] = ()
    # A digest of the responses read (status and body of every page): the next poll that
    # reads the same bytes may skip parsing them (see `Unchanged`). Not part of equality:
    # two results that show the same are equal, however the bytes were laid out.
    fingerprint: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A successful poll whose responses were, byte for byte, those of a poll already judged
    (same `fingerprint`): the source did not parse them again, since they can only say the
    same. Sources return it only when the caller passed that fingerprint as `known`."""

    key: EndpointKey
    fingerprint: bytes
    request_id: str | None = None


class PollError(Exception):
    """A poll that returned no usable data. It never changes task state."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        key: EndpointKey,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.key = key
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [f"store {self.key.store} ({self.key.platform.value} {self.key.endpoint}):"]
        parts.append(f"{self.kind.value}:")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}:")
        parts.append(self.message)
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        return " ".join(parts)


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


@dataclass(frozen=True, slots=True)
class EndpointState:
    key: EndpointKey
    baselined: bool = False
    consecutive_failures: int = 0
    current_task_id: str | None = None  # exclusive endpoints: the task shown last time
    last_success_at: datetime | None = None
    last_failure: str | None = None


@dataclass(frozen=True, slots=True)
class StoreHealth:
    store: str
    platform: Platform
    down: bool = False
    outage: int = 0  # number of store.down events so far: part of store event ids
    failing_endpoints: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Event:
    """One change to tell the world about; serialised as a CloudEvent."""

    id: str
    type: str
    store: str
    platform: Platform
    subject: str
    time: datetime
    data: dict[str, Any]
