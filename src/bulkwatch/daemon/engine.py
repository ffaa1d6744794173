"""The engine: assembles every part from Settings, runs the daemon's lifecycle, stops in order.

It composes; it does not poll or deliver itself. The `Poller` owns the poll pipeline, the
`Dispatcher` the deliveries, the state store the durable state, and `DaemonStatus` what health
reports read.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

import structlog

from bulkwatch import __version__
from bulkwatch.config import ResolvedStore, Settings, resolve_stores
from bulkwatch.daemon.backoff import Backoff
from bulkwatch.daemon.chores import heartbeat, housekeeping
from bulkwatch.daemon.fleet import Fleet
from bulkwatch.daemon.http import client_sessions
from bulkwatch.daemon.leases import replica_keeper
from bulkwatch.daemon.poller import Poller
from bulkwatch.daemon.reload import ReloadPlan, notifier_configs, plan_reload
from bulkwatch.daemon.scheduler import (
    InflightJobs,
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
from bulkwatch.sources.base import Source
from bulkwatch.store.base import StateStore
from bulkwatch.store.factory import daemon_lock, open_store
from bulkwatch.telemetry.metrics import Metrics
from bulkwatch.telemetry.pollstats import PollStats
from bulkwatch.tracking.tracker import Policy

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

__all__ = ["Engine"]

log = structlog.get_logger("bulkwatch")


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
        stores = resolve_stores(settings)
        self.notifier_configs = notifier_configs(settings)
        self.replicas = replicas = settings.state.replicas
        # With replicas: this process's id, which fences its poll writes; None without.
        self.replica = settings.state.replica if replicas else None
        # The outbox's claims name the replica, made unique per process (a restarted replica
        # may keep its id, and must not take its predecessor's claims for its own).
        claimer = None if self.replica is None else f"{self.replica}.{secrets.token_hex(4)}"
        self.store: StateStore = open_store(
            settings.state, owner=claimer, claim_timeout=settings.delivery.claim_timeout
        )
        self.notifiers: dict[str, Notifier] = {}
        self.status = DaemonStatus(settings.instance, len(stores), stores, staleness={})
        self.poller = Poller(
            state=self.store,
            router=Router(self.notifier_configs, settings.instance),
            policy=Policy.of(settings.defaults),
            backoff=Backoff(settings.defaults, rng),
            stats=PollStats(self.metrics),
            stores=stores,
            clock=clock,
            last_poll=self.status.last_poll,
            on_events=self.wake_dispatcher,
            log_events=settings.log.events,
            owner=self.replica,
            on_lease_lost=self._lease_lost,
        )
        self.status.backoff_until = self.poller.backoff.until
        self._inflight = InflightJobs()  # scheduled polls running now
        self.fleet = Fleet(
            stores,
            self.status,
            self.poller.poll_if_due,
            self._inflight,
            replicas=replicas,
            on_change=self.poller.ownership_changed,
        )
        # Which stores this replica polls (None: no replicas, every store).
        self.keeper = replica_keeper(
            settings.state, self.store.leases, self.fleet, self.status, self.metrics
        )
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
    def stores(self) -> tuple[ResolvedStore, ...]:
        return self.fleet.stores

    @property
    def sources(self) -> list[Source]:
        return self.fleet.sources

    @property
    def endpoints(self) -> list[tuple[Source, EndpointKey]]:
        return self.fleet.endpoints

    async def __aenter__(self) -> Engine:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        s = self.settings
        session, delivery_session = await client_sessions(self._stack, s.delivery.concurrency)
        # One daemon per state (or replicas only), from before the first read until after
        # the last write.
        await self._stack.enter_async_context(daemon_lock(self.store, replicas=self.replicas))
        await self.store.open()
        self._stack.push_async_callback(self.store.close)
        self.status.ping = self.store.ping
        self.fleet.start(session, self.store)
        self._nctx = NotifierContext(session=delivery_session, instance=s.instance)
        self.notifiers.update((cfg.name, self._build(cfg)) for cfg in self.notifier_configs)
        self._dispatcher = Dispatcher(
            self.store.outbox,
            self.notifiers,
            s.retry,
            s.delivery,
            self.metrics,
            clock=self.clock,
            log_deliveries=s.log.deliveries,
        )
        # A replica's store series start when it takes the store (`ownership_changed`).
        declared = () if self.replicas else self.stores
        self.metrics.declare(
            [(store.platform.value, store.name, store.interval) for store in declared],
            self.notifiers,
        )
        self.metrics.count_stores(len(self.stores), replicas=self.replicas)

    def _build(self, cfg: NotifierConfig) -> Notifier:
        """Build a notifier, to be closed with the engine (a reload may have replaced it)."""
        kind = registry.get(cfg.type)
        if kind is None:  # pragma: no cover - the settings validated every type
            raise RuntimeError(f"notifier type {cfg.type!r} is not registered")
        notifier = kind.build(cfg, self._nctx)
        self._stack.push_async_callback(notifier.aclose)
        return notifier

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _lease_lost(self, store: str) -> None:
        if self.keeper is not None:
            self.keeper.lost(store)

    def wake_dispatcher(self) -> None:
        """Look for due deliveries now (a poll recorded events, or rows were re-queued), not
        at the next idle tick."""
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

    async def reload(self, settings: Settings) -> ReloadPlan:
        """Run by `settings` from now on, without a restart: stores and notifiers added,
        removed or changed are started, stopped or rebuilt; the others go on untouched (their
        jobs keep their schedule). Fields only a restart applies keep their running values
        (`ReloadPlan.restart_needed`). Everything new is built before anything is swapped, so
        a failure leaves the running config whole."""
        plan = plan_reload(self.settings, self.stores, settings)
        sources = self.fleet.prepare(plan)
        rebuilt = [c for c in plan.notifiers if c.name in plan.notifiers_rebuilt]
        notifiers = {cfg.name: self._build(cfg) for cfg in rebuilt}
        # Swap: from here on nothing raises.
        for store in plan.removed:
            self.poller.stats.forget(store.platform.value, store.name)
        self.fleet.swap(plan, sources, self.scheduler, self.clock())
        if self.keeper is not None:  # removed stores released, added ones claimable
            self.keeper.wake()
        self.settings = plan.settings
        for name in plan.notifiers_removed:
            del self.notifiers[name]
        self.notifiers.update(notifiers)
        self.notifier_configs = list(plan.notifiers)
        self.poller.reconfigure(
            stores=plan.stores,
            router=Router(self.notifier_configs, plan.settings.instance),
            policy=Policy.of(plan.settings.defaults),
            defaults=plan.settings.defaults,
            reset={s.name for s in (*plan.added, *plan.removed, *plan.changed)},
        )
        self.dispatcher.set_notifiers(self.notifiers)
        owned = self.fleet.owned
        fresh = [s for s in (*plan.added, *plan.changed) if owned is None or s.name in owned]
        self.metrics.declare([(s.platform.value, s.name, s.interval) for s in fresh], notifiers)
        self.metrics.count_stores(len(plan.stores), replicas=self.replicas)
        return plan

    async def serve(
        self,
        stop: asyncio.Event,
        *,
        grace: float = 10.0,
        ready: Callable[[], None] | None = None,
        config: str | None = None,
    ) -> None:
        """Run until `stop` is set; then stop polling, finish in-flight work, and return.
        `ready` is called once everything runs; `config` (the file read) goes in the log."""
        scheduler = self.scheduler = build_scheduler(self.fleet.jobs(), self.clock(), self.metrics)
        self.status.scheduler = partial(scheduler_state, scheduler)
        self.status.next_run = partial(next_run_time, scheduler)
        self.fleet.attach(scheduler, self.clock)
        async with asyncio.TaskGroup() as tg:
            keeper = None if self.keeper is None else tg.create_task(self.keeper.run())
            dispatcher = tg.create_task(self.dispatcher.run())
            chores = tg.create_task(
                housekeeping(
                    self.dispatcher, self.store, self.clock, lambda: self.settings.state.retention
                )
            )
            beat = tg.create_task(heartbeat(self.status))
            scheduler.start()
            log.info(
                "bulkwatch started",
                stores=len(self.sources),
                endpoints=len(self.endpoints),
                notifiers=sorted(self.notifiers),
                version=__version__,
                **({"config": config} if config is not None else {}),
                **({"replica": self.replica} if self.replica is not None else {}),
            )
            if ready is not None:
                ready()
            await stop.wait()
            log.info("stopping: finishing in-flight polls and deliveries", grace_s=grace)
            deadline = time.monotonic() + grace  # one grace period for polls and deliveries
            if keeper is not None:
                keeper.cancel()  # no more stores taken on
            scheduler.pause()
            if cancelled := await self._inflight.finish(deadline):
                log.warning("polls still running after the grace; cancelled", polls=cancelled)
            if self.keeper is not None:  # polls stopped: the others may take the stores now
                await self.keeper.leave()
            scheduler.shutdown(wait=False)
            chores.cancel()
            await self.dispatcher.drain(max(deadline - time.monotonic(), 0.0))
            dispatcher.cancel()
            beat.cancel()
        log.info("bulkwatch stopped")
