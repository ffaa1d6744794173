"""The lease keeper: with `state.replicas`, which stores this replica polls.

Each round (every TTL/3) it renews its leases, which also keeps it counted as live, reads how
many replicas are live, and moves toward its fair share, ceil(configured stores / live
replicas): below it, it claims the difference (and again every max(1 s, TTL/10) while it
stays below and stores are free); above it, it stops polling the extras, then releases them,
so that a replica that joins finds its share free. A store a renewal no longer returns (its
lease expired and may be another's) stops being polled at once.

Why polls stop in time: a lease lasts TTL from when the database ran the statement, which is
no earlier than when this replica sent it. So the keeper notes when each successful renewal
was *sent* (monotonic clock) and, unless a newer one succeeds first, stops polling every store
at that moment plus TTL/2 (`held.py`): before any lease it may have lost can have passed to
another replica, with half the TTL as margin for clock rates and a busy loop. Poll writes are
fenced besides (`PollWrite.owner`): a write by a replica that no longer holds the store is
refused, and the poller reports it here (`lost`). On stop the keeper releases every lease, so
the others take the stores over without waiting for the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import zlib
from collections.abc import Callable
from datetime import timedelta

import structlog

from bulkwatch.config import StateSettings
from bulkwatch.daemon.held import HeldStores, Polling, named
from bulkwatch.daemon.status import DaemonStatus, ReplicaStatus
from bulkwatch.store.base import Leases
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["LeaseKeeper", "replica_keeper"]

log = structlog.get_logger("bulkwatch")

LEAVE_TIMEOUT_S = 5.0  # the release on stop; past it the leases expire by themselves


def replica_keeper(
    state: StateSettings, leases: Leases, polling: Polling, status: DaemonStatus, metrics: Metrics
) -> LeaseKeeper | None:
    """The lease keeper of a replica (`state.replicas`), its status and its metrics declared;
    None without replicas."""
    if not state.replicas:
        return None
    status.replica = ReplicaStatus(state.replica, state.lease_ttl)
    metrics.declare_replica(state.replica)
    return LeaseKeeper(leases, polling, status.replica, metrics)


class LeaseKeeper(HeldStores):
    """Claims, renews and releases this replica's leases, and starts and stops the polls of
    the stores it holds. `run` until cancelled, then `leave`."""

    def __init__(
        self,
        leases: Leases,
        polling: Polling,
        status: ReplicaStatus,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(polling, status, metrics, clock=clock)
        self._leases = leases
        self._ttl = timedelta(seconds=status.ttl)
        self._wake = asyncio.Event()
        self._next_round = 0.0
        self._next_claim = 0.0
        self._failing: dict[str, str] = {}  # what fails (renew, claim...) -> why, logged once

    @property
    def owner(self) -> str:
        return self.status.replica

    @property
    def _round_s(self) -> float:
        return self.status.ttl / 3

    @property
    def _retry_s(self) -> float:
        return max(1.0, self.status.ttl / 10)

    def wake(self) -> None:
        """Look again now: the configured stores changed (a reload)."""
        self._next_round = 0.0
        self._wake.set()

    async def run(self) -> None:
        """Keep the leases until cancelled."""
        while True:
            if self._clock() >= self._next_round:
                await self._round()
            elif self._below_share() and self._clock() >= self._next_claim:
                await self._claim()
            await self._pause()

    async def _pause(self) -> None:
        until = self._next_round
        if self._below_share():
            until = min(until, self._next_claim)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(until - self._clock(), 0.0)):
                await self._wake.wait()
        self._wake.clear()

    async def _round(self) -> None:
        """Renew, count the live replicas, and move toward the fair share."""
        sent = self._clock()
        self._next_round = sent + self._round_s
        try:
            async with asyncio.timeout(self._round_s):
                returned = await self._leases.renew(self.owner, self._ttl)
        except Exception as exc:  # noqa: BLE001 - any failure is a failed renewal, logged once
            self._renewal_failed(exc)
            return
        if self._clock() >= sent + self.status.ttl / 2:
            self._renewal_failed(TimeoutError("the renewal was answered after TTL/2"))
            return
        stray = self._renewed(sent, set(returned))
        try:
            async with asyncio.timeout(self._round_s):
                live = await self._leases.owners()
        except Exception as exc:  # noqa: BLE001 - the share waits for the next round
            self._failed("count live replicas", exc)
            return
        self._succeeded("count live replicas")
        self.status.live = max(len(live), 1)
        await self._balance(stray)

    def _renewal_failed(self, exc: BaseException) -> None:
        self._metrics.lease_renewals.labels("failed").inc()
        self._next_round = self._clock() + self._retry_s
        self._failed("renew leases", exc)

    def _renewed(self, sent: float, returned: set[str]) -> set[str]:
        """Take a successful renewal sent at `sent`: stop the stores it no longer returned,
        adopt the configured ones it returned that are not polled (a claim whose answer was
        lost, polls stopped before a late renewal). Return the leases held of stores no
        longer configured, to release."""
        self._metrics.lease_renewals.labels("ok").inc()
        self._succeeded("renew leases")
        self._renewed_at(sent)
        if gone := self._held - returned:
            self._stop(gone, "gone")
            log.warning(
                "leases not renewed (expired, perhaps taken over); stopped polling them",
                stores=len(gone),
                first=named(gone),
            )
        configured = set(self._polling.configured)
        if adopted := (returned & configured) - self._held:
            self._start(adopted, prompt=adopted)
        return returned - configured

    async def _balance(self, stray: set[str]) -> None:
        """Release what is above the fair share or no longer configured, then claim what is
        below it."""
        configured = set(self._polling.configured)
        self.status.share = math.ceil(len(configured) / self.status.live)
        release = stray | (self._held - configured)
        if (extra := len(self._held & configured) - self.status.share) > 0:
            # Which ones: an order of this replica's own, so that two replicas giving
            # stores up at once give up different kinds.
            def order(store: str) -> int:
                return zlib.crc32(f"{self.owner}/{store}".encode())

            release |= set(sorted(self._held & configured, key=order)[:extra])
        if release:
            self._stop(release & self._held)  # stop polling first, then release
            await self._release(release)
        if self._below_share():
            await self._claim()
        else:
            self.status.waiting = False

    async def _claim(self) -> None:
        """Claim free stores up to the fair share."""
        self._next_claim = self._clock() + self._retry_s
        want = self.status.share - len(self._held)
        free = [s for s in self._polling.configured if s not in self._held]
        if want <= 0 or not free:
            self.status.waiting = want > 0
            return
        try:
            async with asyncio.timeout(self._round_s):
                claimed = await self._leases.take(self.owner, free, want, self._ttl)
        except Exception as exc:  # noqa: BLE001 - claimed again at the next try
            self._failed("claim leases", exc)
            return
        self._succeeded("claim leases")
        self.status.waiting = len(claimed.stores) < want
        if not self._fresh():
            return  # polls stopped meanwhile: the next renewal adopts what was claimed
        self._start(set(claimed.stores) - self._held, prompt=claimed.taken_over)
        self._metrics.lease_takeovers.inc(len(claimed.taken_over))
        if claimed.stores:
            log.info(
                "claimed stores",
                stores=len(claimed.stores),
                taken_over=len(claimed.taken_over),
                first=named(claimed.stores),
                held=len(self._held),
                share=self.status.share,
            )

    async def _release(self, stores: set[str]) -> None:
        try:
            async with asyncio.timeout(self._round_s):
                await self._leases.release(self.owner, sorted(stores))
        except Exception as exc:  # noqa: BLE001 - unreleased leases expire by themselves
            self._failed("release leases", exc)
            return
        self._succeeded("release leases")
        self._metrics.lease_releases.inc(len(stores))
        log.info("released stores", stores=len(stores), first=named(stores))

    async def leave(self) -> None:
        """Stop polling and release every lease (on stop: the others take over at once)."""
        self._disarm()
        held = set(self._held)
        self._stop(held)
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT_S):
                await self._leases.release(self.owner)
        except Exception as exc:  # noqa: BLE001 - they expire after lease_ttl instead
            log.warning(
                "could not release the leases; the other replicas take the stores over when "
                "they expire",
                stores=len(held),
                error=f"{type(exc).__name__}: {exc}",
            )
            return
        self._metrics.lease_releases.inc(len(held))
        log.info("released every lease", stores=len(held), replica=self.owner)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Log a failure once per operation and cause, not at every try."""
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._failing.get(what) == error:
            return
        self._failing[what] = error
        log.warning("a lease operation fails; trying again", operation=what, error=error)

    def _succeeded(self, what: str) -> None:
        if (error := self._failing.pop(what, None)) is not None:
            log.info("a lease operation works again", operation=what, after_error=error)
