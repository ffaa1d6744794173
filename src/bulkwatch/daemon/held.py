"""The stores a replica holds and polls, and how it stops polling them when it may have lost
their leases: the polling half of the lease keeper (`daemon/leases.py`, which talks to the
database, builds on it).

A store is held from the moment its claim (or a renewal) returned it until a renewal no
longer does ("gone"), a poll write of it is refused ("fenced"), or no renewal succeeded for
TTL/2 after the last successful one was sent ("unrenewed": every store at once, by a timer,
however long the renewal in flight takes). Each is counted in
`bulkwatch_lease_lost_total{reason}` and logged once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Protocol

import structlog

from bulkwatch.daemon.status import ReplicaStatus
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["HeldStores", "Polling", "named"]

log = structlog.get_logger("bulkwatch")

MAX_NAMED = 10  # stores named in one log line; the count says the rest


class Polling(Protocol):
    """What starts and stops the polls of the configured stores (`Fleet`)."""

    @property
    def configured(self) -> list[str]: ...

    def own(self, stores: Collection[str], prompt: Collection[str] = ()) -> None: ...

    def disown(self, stores: Collection[str]) -> None: ...


def named(stores: Collection[str]) -> list[str]:
    """The first stores by name, for a log line."""
    return sorted(stores)[:MAX_NAMED]


class HeldStores:
    """The stores held and polled, and the timer that stops them TTL/2 after the last
    successful renewal was sent."""

    def __init__(
        self,
        polling: Polling,
        status: ReplicaStatus,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._polling = polling
        self.status = status
        self._metrics = metrics
        self._clock = clock
        self._held: set[str] = set()
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def held(self) -> frozenset[str]:
        """The stores this replica holds a lease for and polls."""
        return frozenset(self._held)

    def _fresh(self) -> bool:
        """The last successful renewal is recent enough to go on polling (under TTL/2)."""
        sent = self.status.renewed_at
        return sent is not None and self._clock() < sent + self.status.ttl / 2

    def _below_share(self) -> bool:
        return self._fresh() and len(self._held) < self.status.share

    def _renewed_at(self, sent: float) -> None:
        """A renewal sent at `sent` succeeded: poll on until TTL/2 after it."""
        self.status.renewed_at = sent
        if self._expiry is not None:
            self._expiry.cancel()
        delay = max(sent + self.status.ttl / 2 - self._clock(), 0.0)
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _start(self, stores: set[str], prompt: Collection[str] = ()) -> None:
        """Poll `stores` from now on; those in `prompt` (unpolled for a while: taken over,
        or resumed after failed renewals) first within seconds, the others within their
        interval, as at start."""
        self._held |= stores
        self._polling.own(stores, prompt)
        self._show()

    def _stop(self, stores: Collection[str], reason: str | None = None) -> None:
        """Stop polling `stores`; with a `reason`, they were lost (counted)."""
        self._held -= set(stores)
        self._polling.disown(stores)
        if reason is not None:
            self._metrics.lease_lost.labels(reason).inc(len(stores))
        self._show()

    def _expire(self) -> None:
        """TTL/2 after the last successful renewal was sent, and none since: stop polling
        every store, before any of their leases can have passed to another replica."""
        self._expiry = None
        if not self._held:
            return
        held = set(self._held)
        self._stop(held, "unrenewed")
        log.warning(
            "no lease renewal succeeded within half the lease TTL; stopped polling every "
            "store until one does",
            stores=len(held),
            ttl_s=self.status.ttl,
        )

    def _disarm(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def lost(self, store: str) -> None:
        """A poll write of `store` was refused: its lease is no longer this replica's."""
        if store not in self._held:
            return  # another endpoint's write told already
        self._stop([store], "fenced")
        log.warning(
            "a poll write was refused: this replica no longer holds the store's lease; "
            "stopped polling it",
            store=store,
        )

    def _show(self) -> None:
        self._metrics.lease_stores_owned.set(len(self._held))
