"""The state-store contract, in two protocols: poll state, and the delivery outbox.

A store stores. It is handed what to write (state rows and ready outbox rows) and returns what
it read; it knows nothing of events, their encoding or where they go. What it guarantees:
everything in one `PollWrite` (task state, endpoint state, store health and the outbox rows
of the poll's events) commits in one transaction, or none of it does.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    EndpointView,
    Platform,
    StoreHealth,
    TaskStatus,
    TrackedTask,
)
from bulkwatch.store.leasing import Claimed, Holder, LeaseLostError, Leases, StateInUseError

__all__ = [
    "Claimed",
    "Delivery",
    "DeliveryStatus",
    "Holder",
    "LeaseLostError",
    "Leases",
    "Outbox",
    "OutboxRow",
    "PollState",
    "PollWrite",
    "SchemaTooNewError",
    "StateInUseError",
    "StateStore",
    "StatusReads",
    "StoreCorruptError",
    "StoreUnavailableError",
    "StoreWriteError",
    "StoredToken",
    "TaskCursor",
    "TaskQuery",
    "TokenState",
    "Troubled",
]


class StoreUnavailableError(Exception):
    """The state store did not answer; readiness reports it until it does again."""

    # True when the store logged this failure itself: callers count it without a log line.
    reported: bool = False


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer bulkwatch; downgrading it is not supported."""


class StoreWriteError(StoreUnavailableError):
    """The state store answers reads, but its last write failed (disk full, read-only, I/O
    error); readiness reports it until a write succeeds again."""


class StoreCorruptError(Exception):
    """The state database failed its integrity check at start: restarting will not help."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One event for one notifier, ready to store: the body is the encoded CloudEvent."""

    event_id: str
    notifier: str
    event_type: str
    store: str
    body: bytes
    created_at: datetime  # also when the first attempt falls due
    # The event's subject (a task, or a whole store): the rows of one notifier and subject are
    # delivered one at a time, in the order they were written. None: never held back.
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class PollWrite:
    """Everything one poll writes, committed in one transaction."""

    endpoint: EndpointState
    health: StoreHealth | None = None  # None: the store's health did not change
    upserts: Sequence[TrackedTask] = ()
    # A row whose (event id, notifier) is already stored is left alone: a poll judged again
    # after a failed write produces the same ids.
    outbox: Sequence[OutboxRow] = ()
    # Endpoint notes that changed, (name, value); an empty value removes the note.
    notes: Sequence[tuple[str, str]] = ()
    # The replica writing, when replicas share the stores: the write is fenced, refused with
    # `LeaseLostError` (nothing written) unless `owner` holds an unexpired lease on the
    # endpoint's store. None: not fenced (one daemon polls every store).
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stored outbox row and what became of it so far."""

    id: int
    event_id: str
    notifier: str
    event_type: str
    store: str
    body: bytes  # CloudEvents structured JSON
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaskCursor:
    """Where a page of recent tasks ended: the last task's sort key (newest first)."""

    first_seen_at: datetime
    store: str
    platform: Platform
    task_id: str

    @classmethod
    def of(cls, task: TrackedTask) -> TaskCursor:
        s = task.snapshot
        return cls(task.first_seen_at, s.store, s.platform, s.task_id)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which recent tasks to read: each filter narrows, `after` continues a page."""

    limit: int
    store: str | None = None
    platform: Platform | None = None
    status: TaskStatus | None = None
    since: datetime | None = None  # first seen at or after
    after: TaskCursor | None = None  # only tasks that sort after it (are older)


@dataclass(frozen=True, slots=True)
class Troubled:
    """Stores down or with a failing endpoint: how many, and the first by name."""

    down: int
    failing: int  # up, but with at least one failing endpoint
    stores: list[StoreHealth]


class StatusReads(Protocol):
    """Bounded reads for the status page and the API: each reads at most a page of rows
    through an index, however many stores and tasks are kept."""

    async def recent_tasks(self, query: TaskQuery) -> list[TrackedTask]:
        """At most `query.limit` tasks, newest first (first seen, then store, platform, id,
        all descending)."""

    async def health_of(self, stores: Collection[str]) -> list[StoreHealth]:
        """The stored health of these stores (those polled at least once), by name."""

    async def endpoints_of(self, stores: Collection[str]) -> list[EndpointState]:
        """The stored endpoints of these stores, by store and endpoint."""

    async def troubled_stores(self, limit: int) -> Troubled:
        """Counts of down and failing stores, and the first `limit` of them by name."""


class PollState(Protocol):
    """What polling reads and writes: endpoints, their tasks, store health."""

    async def load_view(self, key: EndpointKey, task_ids: Collection[str] = ()) -> EndpointView:
        """The endpoint's state, its store's health, and its tasks among `task_ids` plus its
        current task (not every task it ever showed). Defaults for what was never written."""

    async def save_poll(self, write: PollWrite) -> None:
        """Write `write` in one transaction; if anything raises, nothing is written. With
        `write.owner`, raise `LeaseLostError` unless it holds the store's lease (a backend of
        one process, which owns every store, may ignore the owner)."""

    async def list_tasks(self, store: str | None = None) -> list[TrackedTask]:
        """Tracked tasks (gone ones included), optionally of one store, by store and id."""

    async def list_endpoints(self, store: str | None = None) -> list[EndpointState]:
        """Every endpoint polled at least once, optionally of one store, by store and name."""

    async def list_notes(self, store: str | None = None) -> list[tuple[str, str, str, str]]:
        """(store, endpoint, name, value) of every endpoint note (`PollWrite.notes`)."""

    async def list_health(self) -> list[StoreHealth]:
        """The health of every store polled at least once, by store name."""

    async def prune(self, before: datetime) -> int:
        """Forget terminal tasks last changed before `before` and delivered rows older than it."""


class Outbox(Protocol):
    """The deliveries: handed out when due, marked with what became of them.

    An outbox several processes share (PostgreSQL) claims what it hands out: no other process
    gets the row until its outcome is recorded, `release`d, or the claim times out (the
    process died with it in flight); it is then handed out again under the same event id.
    """

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending rows whose next attempt is due, oldest first, claimed for this outbox; a
        row waits while an older pending row of the same notifier and subject exists, or
        while another claim on it holds."""

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending row can be handed out, or None when nothing is pending."""

    async def release(self, ids: Sequence[int]) -> None:
        """Free rows handed out but not attempted, so they are handed out again at once."""

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None: ...

    async def commit(self) -> int:
        """Make every outcome marked since the last call durable; raise when any of them
        cannot be (the caller keeps them and marks them again later). Return how many were
        dropped instead, because another process took their row after this one's claim
        timed out (the other's outcome stands)."""

    async def mark_retry(
        self, delivery_id: int, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None: ...

    async def mark_dead(self, delivery_id: int, *, attempts: int, error: str) -> None: ...

    async def list_deliveries(
        self,
        status: DeliveryStatus,
        *,
        notifier: str | None = None,
        limit: int = 1000,
        after: int | None = None,
    ) -> list[Delivery]:
        """Rows in one status, oldest id first; `after`: only ids above it."""

    async def recent_events(self, limit: int, *, before: int | None = None) -> list[Delivery]:
        """Every row of the `limit` newest events (whose rows have ids below `before`),
        newest event first, each event's rows by id."""

    async def requeue_dead(
        self, now: datetime, *, ids: Sequence[int] | None = None, notifier: str | None = None
    ) -> int:
        """Make dead rows pending again with a fresh attempt count; return how many."""

    async def outbox_counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """(notifier, status) -> rows, for the outbox gauges."""


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A store's access token as bulkwatch last refreshed it (Shopline apps with credentials).

    `seed` is a digest of the configured token the chain of refreshes started from: when the
    configured token changes (the app was authorised again), the stored one is forgotten.
    The token is a live credential: never logged, never shown, not in the repr.
    """

    store: str
    token: str = field(repr=False)
    expires_at: datetime | None
    seed: str
    refreshed_at: datetime


class TokenState(Protocol):
    """Where refreshed access tokens are kept, so that a restart goes on with the current one."""

    async def load_token(self, store: str) -> StoredToken | None:
        """The stored token of `store`, or None when none was ever refreshed."""

    async def save_token(self, token: StoredToken) -> None:
        """Keep `token` as its store's current one, durably before returning (the platform
        retires the previous token minutes after a refresh)."""


class StateStore(PollState, TokenState, Protocol):
    """A whole backend: its poll state, its `outbox`, its `leases`, and a lifecycle."""

    @property
    def outbox(self) -> Outbox: ...

    @property
    def leases(self) -> Leases: ...

    @property
    def reads(self) -> StatusReads:
        """The bounded reads of the status page and the API."""

    async def open(self) -> None:
        """Create or migrate the schema."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Answer a trivial read of the stored state, or raise `StoreUnavailableError`;
        `StoreWriteError` when it reads but its last write failed."""
