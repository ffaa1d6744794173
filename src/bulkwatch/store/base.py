"""The state-store contract: task state and outbox rows commit in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from bulkwatch.model import EndpointKey, EndpointView, Event, PollOutcome, StoreHealth, TrackedTask

__all__ = [
    "Delivery",
    "DeliveryStatus",
    "StateStore",
    "StoreUnavailableError",
]


class StoreUnavailableError(Exception):
    """The state store did not answer; readiness reports it until it does again."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row: one event for one notifier."""

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
    extra: dict[str, str] = field(default_factory=dict)


# Renders an event into the CloudEvents JSON body stored in the outbox.
EventEncoder = Callable[[Event], bytes]
# Names of the notifiers that want this event.
EventRouter = Callable[[Event], Sequence[str]]


class StateStore(Protocol):
    """Durable state. Every method is safe to call from the event loop."""

    async def open(self) -> None:
        """Create or migrate the schema."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Answer a trivial read of the stored state, or raise `StoreUnavailableError`."""

    async def record_poll(
        self,
        key: EndpointKey,
        judge: Callable[[EndpointView], PollOutcome],
        encode: EventEncoder,
        route: EventRouter,
        *,
        task_ids: Collection[str] = (),
    ) -> PollOutcome:
        """Load the endpoint's state and its tasks in `task_ids` (and its current task), call
        `judge`, and in ONE transaction write the new task state, endpoint state, store health
        and one pending outbox row per (event, routed notifier). Rows whose (event id,
        notifier) already exist are left alone."""

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending rows whose next attempt is due, oldest first."""

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending row falls due, or None when nothing is pending."""

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None: ...

    async def mark_retry(
        self, delivery_id: int, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None: ...

    async def mark_dead(self, delivery_id: int, *, attempts: int, error: str) -> None: ...

    async def list_deliveries(
        self, status: DeliveryStatus, *, notifier: str | None = None, limit: int = 1000
    ) -> list[Delivery]: ...

    async def requeue_dead(
        self, now: datetime, *, ids: Sequence[int] | None = None, notifier: str | None = None
    ) -> int:
        """Make dead rows pending again with a fresh attempt count; return how many."""

    async def outbox_counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """(notifier, status) -> rows, for the outbox gauges."""

    async def list_tasks(self, store: str | None = None) -> list[TrackedTask]: ...

    async def list_health(self) -> list[StoreHealth]: ...

    async def prune(self, before: datetime) -> int:
        """Forget terminal tasks last changed before `before` and delivered rows older than it."""
