"""The engine: assembles every part from Settings, runs the daemon's lifecycle, stops in order.

It composes; it does not poll or deliver itself. The `Poller` owns the poll pipeline, the
`Dispatcher` the deliveries, the state store the durable state, and `DaemonStatus` what health
reports read.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
import structlog

from bulkwatch import __version__
from bulkwatch.common.useragent import USER_AGENT
from bulkwatch.config import Settings, resolve_stores
from bulkwatch.daemon.backoff import Backoff
from bulkwatch.daemon.poller import Poller
from bulkwatch.daemon.scheduler import (
    InflightJobs,
    PollJob,
    build_scheduler,
    next_run_time,
    scheduler_state,
)
from bulkwatch.daemon.status import DaemonStatus
from bulkwatch.delivery.dispatcher import Dispatcher
from bulkwatch.delivery.routing import Router
from bulkwatch.model import EndpointKey, utcnow
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.base import Notifier, NotifierConfig, NotifierContext
from bulkwatch.notifiers.log import LogNotifierConfig
from bulkwatch.sources.base import Source
from bulkwatch.sources.factory import make_source
from bulkwatch.store.base import StateStore
from bulkwatch.store.factory import daemon_lock, open_store_from_url
from bulkwatch.telemetry.metrics import Metrics
from bulkwatch.telemetry.pollstats import PollStats
from bulkwatch.tracking.tracker import Policy

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

__all__ = ["Engine"]

log = structlog.get_logger("bulkwatch")


def _default_notifiers(settings: Settings) -> list[NotifierConfig]:
    if settings.notifiers:
        return list(settings.notifiers)
    # No notifiers configured: events are only logged.
    return [LogNotifierConfig(name="log")]


class Engine:
    """Every running part of bulkwatch. Use as `async with Engine(settings) as engine:`."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.clock = clock
        self.stores = resolve_stores(settings)
        self.notifier_configs = _default_notifiers(settings)
        self.store: StateStore = open_store_from_url(settings.state.url)
        self.sources: list[Source] = []
        self.notifiers: dict[str, Notifier] = {}
        self.status = DaemonStatus(
            instance=settings.instance,
            stores=len(self.stores),
            staleness={
                EndpointKey(s.name, s.platform, endpoint): s.staleness
                for s in self.stores
                for endpoint in s.endpoints
            },
        )
        d = settings.defaults
        self.poller = Poller(
            state=self.store,
            router=Router(self.notifier_configs, settings.instance),
            policy=Policy(
                stall_after=timedelta(seconds=d.stall_after),
                expiry_warning=timedelta(seconds=d.expiry_warning),
                down_after=d.down_after,
            ),
            backoff=Backoff(d, rng),
            stats=PollStats(self.metrics),
            stores=self.stores,
            clock=clock,
            last_poll=self.status.last_poll,
            on_events=self._wake_dispatcher,
        )
        self.status.backoff_until = self._backoff_until
        self._inflight = InflightJobs()  # scheduled polls running now
        self._stack = AsyncExitStack()
        self._dispatcher: Dispatcher | None = None
        self.scheduler: AsyncIOScheduler | None = None  # set by serve()

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise RuntimeError("use the engine inside `async with`")
        return self._dispatcher

    @property
    def backoff(self) -> Backoff:
        return self.poller.backoff

    @property
    def endpoints(self) -> list[tuple[Source, EndpointKey]]:
        return [(src, key) for src in self.sources for key in src.endpoints]

    async def __aenter__(self) -> Engine:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        s = self.settings
        headers = {"User-Agent": USER_AGENT}
        session = await self._stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=200, ttl_dns_cache=300), headers=headers
            )
        )
        # Deliveries have their own connections: a slow platform holding every polling
        # connection must not delay a webhook, nor a slow webhook a poll.
        delivery_session = await self._stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max(s.delivery.concurrency, 16)),
                headers=headers,
            )
        )
        # One process per state file, from before the first read until after the last write.
        self._stack.enter_context(daemon_lock(self.store))
        await self.store.open()
        self._stack.push_async_callback(self.store.close)
        self.status.ping = self.store.ping
        self.sources = [make_source(store, session) for store in self.stores]
        nctx = NotifierContext(session=delivery_session, instance=s.instance)
        for cfg in self.notifier_configs:
            kind = registry.get(cfg.type)
            if kind is None:  # pragma: no cover - the settings validated every type
                raise RuntimeError(f"notifier type {cfg.type!r} is not registered")
            notifier = kind.build(cfg, nctx)
            self.notifiers[cfg.name] = notifier
            self._stack.push_async_callback(notifier.aclose)
        self._dispatcher = Dispatcher(
            self.store.outbox, self.notifiers, s.retry, s.delivery, self.metrics, clock=self.clock
        )
        self.metrics.declare(
            [(store.platform.value, store.name, store.interval) for store in self.stores],
            self.notifiers,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _backoff_until(self, store: str) -> datetime | None:
        return self.poller.backoff.until(store)

    def wake_dispatcher(self) -> None:
        """Look for due deliveries now (rows were just re-queued), not at the next idle tick."""
        self._wake_dispatcher()

    def _wake_dispatcher(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.wake()

    # --- one-shot work (the `once` command, tests) ---------------------------------------

    async def poll(self, source: Source, key: EndpointKey) -> bool:
        """Poll one endpoint now, backoff or not. True on success."""
        return await self.poller.poll(source, key)

    async def poll_if_due(self, source: Source, key: EndpointKey) -> bool | None:
        """Poll one endpoint unless its store is backing off (then None, without a request)."""
        return await self.poller.poll_if_due(source, key)

    async def poll_all_once(self, concurrency: int = 64) -> bool:
        """Poll every endpoint once, at most `concurrency` at a time. True if all succeeded."""
        return await self.poller.poll_all(self.endpoints, concurrency)

    async def deliver_due_once(self) -> int:
        """Attempt every delivery that is due now, once, and those released by them (the
        next event of a task, once the one before is delivered). Returns the attempts made."""
        total = 0
        while attempted := await self.dispatcher.run_once():
            total += attempted
        await self.dispatcher.refresh_gauges()
        return total

    # --- the daemon ------------------------------------------------------------------------

    def _jobs(self) -> list[PollJob]:
        stores = {store.name: store for store in self.stores}
        jobs = []
        for source, key in self.endpoints:
            store = stores[key.store]
            run = self._inflight.wrap(partial(self.poller.poll_if_due, source, key), f"poll {key}")
            jobs.append(PollJob(key, store.interval, store.jitter, run))
        return jobs

    async def serve(
        self, stop: asyncio.Event, *, grace: float = 10.0, ready: Callable[[], None] | None = None
    ) -> None:
        """Run until `stop` is set; then stop polling, finish in-flight work, and return.
        `ready` is called once everything runs."""
        scheduler = self.scheduler = build_scheduler(
            self._jobs(),
            self.clock(),
            on_missed=self._job_missed,
            on_error=self._job_failed,
        )
        self.status.scheduler = partial(scheduler_state, scheduler)
        self.status.next_run = partial(next_run_time, scheduler)
        async with asyncio.TaskGroup() as tg:
            dispatcher = tg.create_task(self.dispatcher.run())
            housekeeping = tg.create_task(self._housekeeping())
            heartbeat = tg.create_task(self._heartbeat())
            scheduler.start()
            log.info(
                "bulkwatch started",
                stores=len(self.sources),
                endpoints=len(self.endpoints),
                notifiers=sorted(self.notifiers),
                version=__version__,
            )
            if ready is not None:
                ready()
            await stop.wait()
            log.info("stopping: finishing in-flight polls and deliveries", grace_s=grace)
            deadline = time.monotonic() + grace  # one grace period for polls and deliveries
            scheduler.pause()
            if cancelled := await self._inflight.finish(deadline):
                log.warning("polls still running after the grace; cancelled", polls=cancelled)
            scheduler.shutdown(wait=False)
            housekeeping.cancel()
            await self.dispatcher.drain(max(deadline - time.monotonic(), 0.0))
            dispatcher.cancel()
            heartbeat.cancel()
        log.info("bulkwatch stopped")

    def _job_missed(self, job: str) -> None:
        self.metrics.scheduler_missed.inc()
        log.warning("poll missed its slot", job=job)

    def _job_failed(self, job: str, exc: BaseException | None) -> None:
        self.metrics.scheduler_failed.inc()
        log.error("poll job failed", job=job, error=repr(exc))

    async def _heartbeat(self, period: float = 1.0) -> None:
        """Beat every `period` seconds for liveness, noting how late each beat woke: a late
        beat means something held the event loop (and so every poll) for that long."""
        status = self.status
        while True:
            status.heartbeat_at = time.monotonic()
            await asyncio.sleep(period)
            status.loop_lag = max(0.0, time.monotonic() - status.heartbeat_at - period)

    async def _housekeeping(self) -> None:
        """Outbox gauges every few seconds; pruning of old state every hour."""
        next_prune = 0.0
        while True:
            try:
                await self.dispatcher.refresh_gauges()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + 3600
                    before = self.clock() - timedelta(seconds=self.settings.state.retention)
                    if pruned := await self.store.prune(before):
                        log.info("pruned old state", rows=pruned)
            except Exception as exc:  # noqa: BLE001 - a failing store must not stop the daemon
                # Readiness reports the store; pruning waits for its next hour.
                log.warning("housekeeping failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(5)
