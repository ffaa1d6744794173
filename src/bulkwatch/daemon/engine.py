"""The engine: builds every part from Settings, polls, records, delivers, and stops in order."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
import structlog

from bulkwatch import __version__
from bulkwatch.config import Settings
from bulkwatch.daemon.backoff import Backoff
from bulkwatch.daemon.scheduler import InflightJobs, PollJob, build_scheduler
from bulkwatch.delivery.dispatcher import Dispatcher
from bulkwatch.model import (
    EndpointKey,
    EndpointView,
    Event,
    FailureKind,
    PollError,
    PollOutcome,
    PollResult,
    Unchanged,
    encode_cloudevent,
)
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.base import Notifier, NotifierConfig, NotifierContext
from bulkwatch.notifiers.log import LogNotifierConfig
from bulkwatch.sources.base import Source, SourceContext, make_source
from bulkwatch.store.base import StateStore
from bulkwatch.store.factory import open_store_from_url
from bulkwatch.telemetry.metrics import Metrics
from bulkwatch.telemetry.pollstats import PollStats
from bulkwatch.tracking.tracker import Policy, judge_failure, judge_success, quiet_until

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

__all__ = ["Engine", "utcnow"]

log = structlog.get_logger("bulkwatch")


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.policy = Policy(
            stall_after=timedelta(seconds=settings.defaults.stall_after),
            expiry_warning=timedelta(seconds=settings.defaults.expiry_warning),
            down_after=settings.defaults.down_after,
        )
        self.notifier_configs = _default_notifiers(settings)
        self.store: StateStore = open_store_from_url(settings.state.url)
        self.sources: list[Source] = []
        self.notifiers: dict[str, Notifier] = {}
        # When each endpoint's job last ran: polled, or deliberately skipped under backoff.
        self.last_poll: dict[EndpointKey, datetime] = {}
        self.backoff = Backoff(settings.defaults, rng)
        self.intervals = {store.name: settings.interval(store) for store in settings.stores}
        # Per endpoint: the fingerprint of the responses its last judged poll read, and until
        # when judging the same bytes again would decide nothing (tracker.quiet_until).
        self._quiet: dict[EndpointKey, tuple[bytes, datetime]] = {}
        self.stats = PollStats(self.metrics)
        self._inflight = InflightJobs()  # scheduled polls running now
        self._stack = AsyncExitStack()
        self._session: aiohttp.ClientSession | None = None
        self._dispatcher: Dispatcher | None = None
        # Liveness (health.py): the heartbeat task's last beat (monotonic), how late it woke.
        self.heartbeat_at: float | None = None
        self.loop_lag = 0.0
        self.scheduler: BaseScheduler | None = None  # set by serve()

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise RuntimeError("use the engine inside `async with`")
        return self._dispatcher

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
        # A poll's objects live ~0.2 s (one round trip). At the default threshold (700
        # allocations) young collections ran so often mid-poll that objects still in use were
        # promoted, and then walked again by full collections; 10,000 keeps them young.
        gen0, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(max(gen0, 10_000), gen1, gen2)
        headers = {"User-Agent": f"bulkwatch/{__version__}"}
        self._session = await self._stack.enter_async_context(
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
        await self.store.open()
        self._stack.push_async_callback(self.store.close)
        ctx = SourceContext(session=self._session, settings=s)
        self.sources = [make_source(store, ctx) for store in s.stores if store.enabled]
        nctx = NotifierContext(session=delivery_session, instance=s.instance)
        for cfg in self.notifier_configs:
            kind = registry.get(cfg.type)
            if kind is None:  # pragma: no cover - the settings validated every type
                raise RuntimeError(f"notifier type {cfg.type!r} is not registered")
            notifier = kind.factory(cfg, nctx)
            self.notifiers[cfg.name] = notifier
            self._stack.push_async_callback(notifier.aclose)
        self._dispatcher = Dispatcher(
            self.store, self.notifiers, s.retry, s.delivery, self.metrics, clock=self.clock
        )
        self.metrics.declare(
            [(src.platform.value, src.store, self.intervals[src.store]) for src in self.sources],
            self.notifiers,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    # --- polling ---------------------------------------------------------------------------

    def _route(self, event: Event) -> Sequence[str]:
        return [n.name for n in self.notifier_configs if n.matches(event.type, event.store)]

    def _encode(self, event: Event) -> bytes:
        return encode_cloudevent(event, self.settings.instance)

    async def poll_if_due(self, source: Source, key: EndpointKey) -> bool | None:
        """The scheduled poll: `poll`, unless the store is backing off after failures; then
        return None at once, without a request, counted as `polls_total{outcome="skipped"}`."""
        now = self.clock()
        if self.backoff.waiting(key.store, now, source.credentials_version):
            self.last_poll[key] = now  # the job ran and chose to wait: not a stale endpoint
            self.stats.skipped(key)
            return None
        return await self.poll(source, key)

    async def poll(self, source: Source, key: EndpointKey) -> bool:
        """Poll one endpoint now (backoff or not), record the outcome and the store's backoff,
        wake the dispatcher. True on success."""
        # bind/reset rather than the bound_contextvars() context manager: half the cost, and
        # this runs for every poll of every store.
        tokens = structlog.contextvars.bind_contextvars(
            store=key.store, platform=key.platform.value, endpoint=key.endpoint, request_id=None
        )
        try:
            return await self._poll(source, key)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def _poll(self, source: Source, key: EndpointKey) -> bool:
        now = self.clock()
        started = time.perf_counter()
        quiet = self._quiet.pop(key, None)  # back only after a success
        known = quiet[0] if quiet is not None and now < quiet[1] else None
        result: PollResult | PollError | Unchanged
        try:
            result = await source.poll_since(key, now, known)
        except PollError as exc:
            result = exc
        except Exception as exc:
            log.exception("poll raised unexpectedly")
            result = PollError(
                FailureKind.INVALID_RESPONSE, f"unexpected {type(exc).__name__}: {exc}", key=key
            )
        # Every later line of this poll names the platform's request id (None when unknown).
        structlog.contextvars.bind_contextvars(request_id=result.request_id)
        self.stats.series(key).duration.observe(time.perf_counter() - started)
        retry_in = self._backoff_after(source, key, result, now)
        if isinstance(result, Unchanged) and quiet is not None:
            # The very bytes the last judged poll read, before any timer of its tasks is
            # due: judging them again would decide nothing, so neither the tracker nor the
            # store is asked. (Most polls of a quiet store end here.)
            self._quiet[key] = quiet
            self.last_poll[key] = now
            self.stats.unchanged(key, now)
            return True
        if isinstance(result, Unchanged):  # pragma: no cover - a source broke its contract
            result = PollError(
                FailureKind.INVALID_RESPONSE, "source answered unchanged, unasked", key=key
            )
        previous_failures = 0
        remember: tuple[bytes, datetime] | None = None  # for `_quiet`, once recorded

        def judge(view: EndpointView) -> PollOutcome:
            nonlocal previous_failures, remember
            previous_failures = view.endpoint.consecutive_failures
            if isinstance(result, PollError):
                return judge_failure(view, result, now, self.policy)
            outcome = judge_success(view, result, now, self.policy)
            # Remembered unless the same bytes must be judged (or counted) again next time.
            if result.fingerprint is not None and not result.problems and not outcome.health.down:
                upserted = {t.task_id: t for t in outcome.upserts}
                shown = [upserted.get(s.task_id) or view.tasks[s.task_id] for s in result.tasks]
                remember = (result.fingerprint, quiet_until(shown, now, self.policy))
            return outcome

        task_ids = [s.task_id for s in result.tasks] if isinstance(result, PollResult) else ()
        try:
            outcome = await self.store.record_poll(
                key, judge, self._encode, self._route, task_ids=task_ids
            )
        except Exception:
            log.exception("recording the poll failed; it will be judged again next time")
            self.stats.failed_to_record(key)
            return False
        self.last_poll[key] = now
        if remember is not None:
            self._quiet[key] = remember
        self.stats.recorded(key, result, outcome, previous_failures, now, retry_in=retry_in)
        if outcome.events:
            self.dispatcher.wake()
        return not isinstance(result, PollError)

    def _backoff_after(
        self,
        source: Source,
        key: EndpointKey,
        result: PollResult | PollError | Unchanged,
        started: datetime,
    ) -> float | None:
        """Update the store's backoff; the seconds its polls now wait (None after a success)."""
        if not isinstance(result, PollError):
            self.backoff.succeeded(key.store)
            return None
        auth = result.kind is FailureKind.AUTH
        return self.backoff.failed(
            key.store,
            result,
            interval=self.intervals[key.store],
            started=started,
            now=self.clock(),
            credentials=source.credentials_version() if auth else 0,
        )

    async def poll_all_once(self, concurrency: int = 64) -> bool:
        """Poll every endpoint once, at most `concurrency` at a time. True if all succeeded."""
        # `concurrency` workers share one iterator, rather than one task per endpoint waiting
        # on a semaphore: 15,000 coroutines alive at once, all promoted to the collector's
        # oldest generation before they run.
        todo = iter(self.endpoints)
        failed = False

        async def worker() -> None:
            nonlocal failed
            for source, key in todo:
                if not await self.poll(source, key):
                    failed = True

        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, concurrency)):
                tg.create_task(worker())
        return not failed

    async def deliver_due_once(self) -> int:
        """Attempt every delivery that is due now, once. Returns the attempts made."""
        total = 0
        while True:
            attempted = await self.dispatcher.run_once()
            total += attempted
            if attempted < self.settings.delivery.batch:
                break
        await self.dispatcher.refresh_gauges()
        return total

    # --- the daemon ------------------------------------------------------------------------

    def _jobs(self) -> list[PollJob]:
        jobs = []
        stores = {s.name: s for s in self.settings.stores}
        for source, key in self.endpoints:
            cfg = stores[key.store]
            run = self._inflight.wrap(partial(self.poll_if_due, source, key), f"poll {key}")
            jobs.append(PollJob(key, self.settings.interval(cfg), self.settings.jitter(cfg), run))
        return jobs

    async def serve(
        self, stop: asyncio.Event, *, grace: float = 10.0, ready: Callable[[], None] | None = None
    ) -> None:
        """Run until `stop` is set; then stop polling, finish in-flight work, and return."""
        scheduler = self.scheduler = build_scheduler(
            self._jobs(),
            self.clock(),
            on_missed=self._job_missed,
            on_error=self._job_failed,
        )
        async with asyncio.TaskGroup() as tg:
            dispatcher = tg.create_task(self.dispatcher.run())
            housekeeping = tg.create_task(self._housekeeping())
            heartbeat = tg.create_task(self._heartbeat())
            scheduler.start()
            # Start-up leaves ~0.5 M long-lived objects at 10,000 stores (settings, sources,
            # jobs, metric series); every full collection walked them all with the loop held
            # (~0.4 s each). Frozen, the collector skips them: they live as long as the process.
            gc.collect()
            gc.freeze()
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
        gc.unfreeze()  # what was frozen may be garbage now (an engine run inside tests)
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
        while True:
            self.heartbeat_at = time.monotonic()
            await asyncio.sleep(period)
            self.loop_lag = max(0.0, time.monotonic() - self.heartbeat_at - period)

    async def _housekeeping(self) -> None:
        """Outbox gauges every few seconds; pruning of old state every hour."""
        next_prune = 0.0
        while True:
            await self.dispatcher.refresh_gauges()
            if time.monotonic() >= next_prune:
                before = self.clock() - timedelta(seconds=self.settings.state.retention)
                pruned = await self.store.prune(before)
                if pruned:
                    log.info("pruned old state", rows=pruned)
                next_prune = time.monotonic() + 3600
            await asyncio.sleep(5)
