"""Polls: which endpoint, what it answered, why it failed, and what a poll changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bulkwatch.model.events import Event
from bulkwatch.model.tasks import Platform, TaskSnapshot, TrackedTask

__all__ = [
    "EndpointKey",
    "EndpointState",
    "EndpointView",
    "FailureKind",
    "Listing",
    "PollError",
    "PollOutcome",
    "PollResult",
    "StoreHealth",
    "Unchanged",
]


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
class Listing:
    """How much of a paged list one poll read (Shoplazza), and what it learnt of the list.

    `order` is the end new tasks appear at, as far as the polls have seen: "newest first",
    "oldest first", or "unknown" (then both ends are read). `length` is None when only a lower
    bound is known (more than `read`). `past_end` is how the platform answered a page after
    the last one ("empty", "404", "400"), when a poll asked for one.
    """

    read: int
    length: int | None
    order: str
    past_end: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every task of the list was read."""
        return self.length is not None and self.read >= self.length


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
    # A paged list: how much of it was read (None for a single-object endpoint).
    listing: Listing | None = field(default=None, compare=False)
    # An exclusive endpoint showing no task: how it said so ("404", "404 html", "{}", ...).
    no_task: str | None = field(default=None, compare=False)


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
class EndpointView:
    """Everything the tracker needs to judge one poll of one endpoint."""

    health: StoreHealth
    endpoint: EndpointState
    # task_id -> last known state, this endpoint only: the tasks the poll shows (those it
    # asked for) and the endpoint's current task; not every task the endpoint ever showed.
    tasks: dict[str, TrackedTask]
    # False when the store has no health row yet: the first outcome is written even when it
    # equals these defaults.
    health_stored: bool = True


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll changes: the new state, and the events to tell."""

    health: StoreHealth
    endpoint: EndpointState
    upserts: Sequence[TrackedTask] = ()
    events: Sequence[Event] = ()
