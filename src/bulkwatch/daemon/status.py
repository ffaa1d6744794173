"""What a running daemon knows of itself, in one small object that health reads.

The engine and the poller write it as things happen; health reports read nothing else (never
the engine's fields, never the scheduler's internals).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bulkwatch.config import ResolvedStore
from bulkwatch.model import EndpointKey

__all__ = ["DaemonStatus", "ReplicaStatus"]


def _not_started() -> str:
    return "not started"


def _unknown(_: str) -> datetime | None:
    return None


@dataclass(slots=True)
class ReplicaStatus:
    """A replica's leases, as its lease keeper last saw them (`daemon/leases.py`)."""

    replica: str  # this replica's id
    ttl: float  # seconds a lease lasts without a renewal
    # Monotonic seconds when the last successful renewal was sent (None: none yet); the
    # replica stops polling TTL/2 after it.
    renewed_at: float | None = None
    share: int = 0  # ceil(configured stores / live replicas)
    live: int = 0  # live replicas, this one included, at the last renewal
    # Below its share, and its last claim found no store free: it waits for one.
    waiting: bool = False


@dataclass(slots=True)
class DaemonStatus:
    """The daemon's self-knowledge: configuration, polls, the loop's heartbeat, the scheduler."""

    instance: str
    stores: int
    # The configured stores by name (the status page and API list them), as of the last reload.
    configured: tuple[ResolvedStore, ...]
    # Every polled endpoint, and after how many seconds without a poll it counts as stale.
    staleness: Mapping[EndpointKey, float]
    # When each endpoint's job last ran: polled, or deliberately skipped under backoff.
    last_poll: dict[EndpointKey, datetime] = field(default_factory=dict)
    # The heartbeat task's last beat (monotonic seconds), and how late it last woke.
    heartbeat_at: float | None = None
    loop_lag: float = 0.0
    # "running", "paused", "stopped" or "not started", asked when a report is made.
    scheduler: Callable[[], str] = _not_started
    # Raises `StoreUnavailableError` when the state store does not answer, and
    # `StoreWriteError` when it answers but its last write (poll, delivery outcome, pruning)
    # failed: readiness follows the last write's outcome.
    ping: Callable[[], Awaitable[None]] | None = None
    # When the scheduler runs an endpoint's job next, by `str(EndpointKey)` (None: no job).
    next_run: Callable[[str], datetime | None] = _unknown
    # Until when a failing store's polls are skipped, by store name (None: not backing off).
    backoff_until: Callable[[str], datetime | None] = _unknown
    # With replicas: the stores this replica polls now (the others count for nothing in
    # health), and its leases. None: no replicas, every store is polled.
    owned: set[str] | None = None
    # When this replica took each store it owns (readiness gives a newly taken store the same
    # grace as a store at start, before counting it stale or never polled).
    owned_at: dict[str, datetime] = field(default_factory=dict)
    replica: ReplicaStatus | None = None
