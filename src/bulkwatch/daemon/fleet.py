"""The configured stores as they run: their resolved settings, their sources, their poll jobs,
and what health reads of them. A config reload swaps some of them; the rest run on untouched.

With replicas (`state.replicas`), only the stores this replica holds a lease for have poll
jobs: the lease keeper (`daemon/leases.py`) calls `own` and `disown` as it claims, loses and
releases them. Without, every store has its jobs from the start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import aiohttp

from bulkwatch.config import ResolvedStore
from bulkwatch.daemon.reload import ReloadPlan
from bulkwatch.daemon.scheduler import (
    MAX_SPREAD_S,
    OWNED_SPREAD_S,
    InflightJobs,
    PollJob,
    add_jobs,
    remove_jobs,
)
from bulkwatch.daemon.status import DaemonStatus
from bulkwatch.model import EndpointKey
from bulkwatch.sources.base import Source
from bulkwatch.sources.factory import make_source
from bulkwatch.store.base import TokenState

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

__all__ = ["Fleet"]

Poll = Callable[[Source, EndpointKey], Awaitable[Any]]
# Told the stores a replica gained and those it lost (their memory and series go with them).
OwnershipChange = Callable[[Sequence[ResolvedStore], Sequence[ResolvedStore]], None]


class Fleet:
    """Every running store. `start` builds the sources; `jobs` are their scheduled polls,
    each running `poll(source, key)` as a tracked job of `inflight`. With `replicas`, only
    the stores `own`ed have jobs (`owned`: their names; None without replicas)."""

    def __init__(
        self,
        stores: tuple[ResolvedStore, ...],
        status: DaemonStatus,
        poll: Poll,
        inflight: InflightJobs,
        *,
        replicas: bool = False,
        on_change: OwnershipChange | None = None,
    ) -> None:
        self.stores = stores
        self.sources: list[Source] = []
        self.owned: set[str] | None = set() if replicas else None
        self._status = status
        self._poll = poll
        self._inflight = inflight
        self._session: aiohttp.ClientSession | None = None
        self._tokens: TokenState | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._clock: Callable[[], datetime] | None = None
        self._on_change = on_change
        status.owned = self.owned
        self._show(stores)

    def start(self, session: aiohttp.ClientSession, tokens: TokenState) -> None:
        """Build every store's source, polling over `session` (which the caller owns) and
        keeping renewed access tokens in `tokens`."""
        self._session = session
        self._tokens = tokens
        self.sources = [make_source(store, session, tokens) for store in self.stores]

    @property
    def endpoints(self) -> list[tuple[Source, EndpointKey]]:
        return [(src, key) for src in self.sources for key in src.endpoints]

    def jobs(self, sources: Sequence[Source] | None = None) -> list[PollJob]:
        """One poll job per endpoint of `sources` (default: all), of owned stores only."""
        stores = {store.name: store for store in self.stores}
        return [
            PollJob(
                key,
                stores[key.store].interval,
                stores[key.store].jitter,
                self._inflight.wrap(partial(self._poll, src, key), f"poll {key}", key),
            )
            for src in (self.sources if sources is None else sources)
            if self.owned is None or src.store in self.owned
            for key in src.endpoints
        ]

    # --- replicas: the stores this one polls -----------------------------------------------

    def attach(self, scheduler: AsyncIOScheduler, clock: Callable[[], datetime]) -> None:
        """The running scheduler that `own` and `disown` add jobs to and remove them from."""
        self._scheduler = scheduler
        self._clock = clock

    @property
    def configured(self) -> list[str]:
        """The names of every configured store, by name."""
        return sorted(store.name for store in self.stores)

    def own(self, stores: Collection[str], prompt: Collection[str] = ()) -> None:
        """Poll these stores from now on (configured ones not yet owned). The first polls of
        those in `prompt` are spread over a few seconds (nobody polled them for a while); the
        others' over their interval, as at start, so a replica's share is not polled in one
        burst per interval."""
        if self.owned is None:
            return
        names = {store.name for store in self.stores}
        fresh = {name for name in stores if name in names and name not in self.owned}
        self.owned |= fresh
        if not fresh:
            return
        if self._on_change is not None:
            self._on_change([s for s in self.stores if s.name in fresh], [])
        if self._scheduler is None or self._clock is None:
            return  # not serving yet: `serve` builds the jobs of what is owned by then
        now = self._clock()
        self._status.owned_at.update((name, now) for name in fresh)
        for spread, chosen in (
            (OWNED_SPREAD_S, fresh & set(prompt)),
            (MAX_SPREAD_S, fresh - set(prompt)),
        ):
            sources = [src for src in self.sources if src.store in chosen]
            add_jobs(self._scheduler, self.jobs(sources), now, spread=spread)

    def disown(self, stores: Collection[str]) -> None:
        """Stop polling these stores now: remove their jobs, cancel their polls running."""
        if self.owned is None:
            return
        gone = set(stores) & self.owned
        self.owned -= gone
        if self._scheduler is not None and gone:
            remove_jobs(
                self._scheduler,
                [key for src in self.sources if src.store in gone for key in src.endpoints],
            )
        self._inflight.cancel(gone)
        for name in gone:
            self._status.owned_at.pop(name, None)
        if self._on_change is not None and gone:
            self._on_change([], [s for s in self.stores if s.name in gone])

    def prepare(self, plan: ReloadPlan) -> list[Source]:
        """The sources of the stores `plan` adds or changes (may raise: nothing swapped)."""
        if self._session is None:
            raise RuntimeError("the fleet has not started")
        fresh = {s.name for s in (*plan.added, *plan.changed)}
        return [make_source(s, self._session, self._tokens) for s in plan.stores if s.name in fresh]

    def swap(
        self,
        plan: ReloadPlan,
        sources: list[Source],
        scheduler: AsyncIOScheduler | None,
        now: datetime,
    ) -> None:
        """Stop the stores `plan` removes or changes, start `sources` (from `prepare`) in
        their place. The jobs of every other store keep their schedule; a poll running now
        finishes."""
        gone = {s.name for s in (*plan.removed, *plan.changed)}
        old_keys = [key for src in self.sources if src.store in gone for key in src.endpoints]
        if scheduler is not None:
            remove_jobs(scheduler, old_keys)
        if self.owned is not None:  # the lease keeper releases them
            self.owned -= {s.name for s in plan.removed}
        for key in old_keys:
            self._status.last_poll.pop(key, None)
        self.stores = plan.stores
        self.sources = [src for src in self.sources if src.store not in gone] + sources
        self._show(plan.stores)
        if scheduler is not None:
            add_jobs(scheduler, self.jobs(sources), now)

    def _show(self, stores: tuple[ResolvedStore, ...]) -> None:
        """What health and the status page read of the stores."""
        self._status.stores = len(stores)
        self._status.configured = tuple(sorted(stores, key=lambda s: s.name))
        self._status.staleness = {
            EndpointKey(s.name, s.platform, endpoint): s.staleness
            for s in stores
            for endpoint in s.endpoints
        }
