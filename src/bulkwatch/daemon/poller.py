"""The poll pipeline: backoff, the request, the unchanged-poll rule, judging, writing, stats.

One `Poller` serves every endpoint. For each poll it asks the store's backoff whether to wait,
asks the source, and then, unless the answer was byte for byte the last judged one, loads the
endpoint's view, lets the tracker judge it, routes the events to outbox rows and writes all of
it in one transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime

import structlog

from bulkwatch.config import Defaults, ResolvedStore
from bulkwatch.daemon.backoff import Backoff
from bulkwatch.delivery.routing import Router
from bulkwatch.model import (
    EndpointKey,
    EndpointView,
    Event,
    FailureKind,
    PollError,
    PollOutcome,
    PollResult,
    Unchanged,
)
from bulkwatch.notifiers.log import describe
from bulkwatch.sources.base import Source
from bulkwatch.store.base import LeaseLostError, PollState, PollWrite, StoreUnavailableError
from bulkwatch.telemetry.notes import NoteStats
from bulkwatch.telemetry.pollstats import PollStats
from bulkwatch.tracking.notes import endpoint_notes
from bulkwatch.tracking.quiet import QuietPolls
from bulkwatch.tracking.tracker import Policy, judge_failure, judge_success

__all__ = ["Poller"]

log = structlog.get_logger("bulkwatch")


class Poller:
    """Polls endpoints and records what each poll changes."""

    def __init__(
        self,
        *,
        state: PollState,
        router: Router,
        policy: Policy,
        backoff: Backoff,
        stats: PollStats,
        stores: Iterable[ResolvedStore],
        clock: Callable[[], datetime],
        last_poll: dict[EndpointKey, datetime],
        on_events: Callable[[], None],
        log_events: bool = True,
        owner: str | None = None,
        on_lease_lost: Callable[[str], None] | None = None,
    ) -> None:
        self._state = state
        self._router = router
        self._policy = policy
        self.backoff = backoff
        self.stats = stats
        self._intervals = {store.name: store.interval for store in stores}
        self._clock = clock
        self._quiet = QuietPolls(policy)
        # When each endpoint's job last ran: polled, or deliberately skipped under backoff.
        self.last_poll = last_poll
        self._on_events = on_events
        self._log_events = log_events
        # With replicas: this replica's id, which fences every write (`PollWrite.owner`), and
        # whom to tell when a write was refused because the store's lease is gone.
        self._owner = owner
        self._on_lease_lost = on_lease_lost
        # The endpoints of one store share its health row: their load-judge-write runs one at
        # a time, so no poll judges a health that another is about to overwrite.
        self._store_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._record_error: str | None = None  # why the last poll could not be recorded
        # The endpoint notes as last written, to write only what changed.
        self._notes: dict[EndpointKey, dict[str, str]] = {}
        self._note_stats = NoteStats(stats.metrics)

    def reconfigure(
        self,
        *,
        stores: Iterable[ResolvedStore],
        router: Router,
        policy: Policy,
        defaults: Defaults,
        reset: Collection[str],
    ) -> None:
        """Poll by reloaded settings from the next poll on: `stores` are every store now,
        `reset` the names of those added, removed or changed, whose memory (backoff, the last
        judged response) is dropped."""
        # Kept for removed stores too: a poll of theirs may still be running.
        self._intervals.update((store.name, store.interval) for store in stores)
        self._router = router
        self.backoff.configure(defaults)
        if policy != self._policy:
            self._policy = policy
            self._quiet = QuietPolls(policy)
        self._forget(reset)

    def _forget(self, stores: Collection[str]) -> None:
        """Drop what this poller remembers of `stores` (backoff, the last judged response,
        the notes as last written)."""
        for name in stores:
            self._quiet.forget(name)
            self.backoff.succeeded(name)
        self._notes = {key: notes for key, notes in self._notes.items() if key.store not in stores}

    def ownership_changed(
        self, gained: Sequence[ResolvedStore], lost: Sequence[ResolvedStore]
    ) -> None:
        """A replica took `gained` and gave up `lost`. A lost store's memory goes (another
        replica polls it meanwhile: what this one judged last may no longer be what is
        stored) and so do its series, so that no alert reads a value this replica no longer
        updates; a gained store's series start from their initial values."""
        self._forget({store.name for store in lost})
        for store in lost:
            self.stats.forget(store.platform.value, store.name)
        self.stats.metrics.declare(
            [(store.platform.value, store.name, store.interval) for store in gained], ()
        )

    async def poll_if_due(self, source: Source, key: EndpointKey) -> bool | None:
        """The scheduled poll: `poll`, unless the store is backing off after failures; then
        return None at once, without a request, counted as `polls_total{outcome="skipped"}`."""
        now = self._clock()
        if self.backoff.waiting(key.store, now, source.credentials_version):
            self.last_poll[key] = now  # the job ran and chose to wait: not a stale endpoint
            self.stats.skipped(key)
            return None
        return await self.poll(source, key)

    async def poll(self, source: Source, key: EndpointKey) -> bool:
        """Poll one endpoint now (backoff or not), record the outcome and the store's backoff,
        wake the dispatcher when there are events. True on success."""
        # bind/reset rather than the bound_contextvars() context manager: half the cost, and
        # this runs for every poll of every store.
        tokens = structlog.contextvars.bind_contextvars(
            store=key.store, platform=key.platform.value, endpoint=key.endpoint, request_id=None
        )
        recorded: list[Event] = []
        try:
            ok = await self._poll(source, key, recorded)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
        if self._log_events:
            # After the poll's context is gone: one short line each, naming what changed.
            for event in recorded:
                log.info(
                    describe(event.type, event.subject, event.store, event.data), event_id=event.id
                )
        return ok

    async def poll_all(
        self, endpoints: Iterable[tuple[Source, EndpointKey]], concurrency: int = 64
    ) -> bool:
        """Poll every endpoint once, at most `concurrency` at a time. True if all succeeded."""
        # `concurrency` workers share one iterator, rather than one task per endpoint waiting
        # on a semaphore: 15,000 coroutines alive at once, all promoted to the collector's
        # oldest generation before they run.
        todo = iter(endpoints)
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

    async def _ask(
        self, source: Source, key: EndpointKey, now: datetime, known: bytes | None
    ) -> PollResult | PollError | Unchanged:
        try:
            return await source.poll_since(key, now, known)
        except PollError as exc:
            return exc
        except Exception as exc:
            log.exception("poll raised unexpectedly")
            return PollError(
                FailureKind.INVALID_RESPONSE, f"unexpected {type(exc).__name__}: {exc}", key=key
            )

    async def _poll(self, source: Source, key: EndpointKey, recorded: list[Event]) -> bool:
        now = self._clock()
        started = time.perf_counter()
        memo = self._quiet.take(key)
        result = await self._ask(source, key, now, None if memo is None else memo.known(now))
        # Every later line of this poll names the platform's request id (None when unknown).
        structlog.contextvars.bind_contextvars(request_id=result.request_id)
        self.stats.series(key).duration.observe(time.perf_counter() - started)
        retry_in = self._backoff_after(source, key, result, now)
        if isinstance(result, Unchanged):
            if memo is None:  # pragma: no cover - a source broke its contract
                result = PollError(
                    FailureKind.INVALID_RESPONSE, "source answered unchanged, unasked", key=key
                )
            else:
                # The very bytes the last judged poll read, before any timer of its tasks is
                # due: judging them again would decide nothing. (Most polls of a quiet store
                # end here.)
                self._quiet.keep(key, memo)
                self.last_poll[key] = now
                self.stats.unchanged(key, now)
                return True
        try:
            view, outcome = await self._record(key, result, now)
        except LeaseLostError:
            # Another replica may poll the store by now: nothing was written, and this one
            # stops polling it (the keeper counts and logs it).
            if self._on_lease_lost is not None:
                self._on_lease_lost(key.store)
            return False
        except Exception as exc:  # noqa: BLE001 - logged once per kind by _record_failed
            self._record_failed(exc)
            self.stats.failed_to_record(key)
            return False
        if self._record_error is not None:
            log.info("recording polls again", after_error=self._record_error)
            self._record_error = None
        self.last_poll[key] = now
        if isinstance(result, PollResult):
            self._quiet.remember(key, result, view, outcome, now)
        self.stats.recorded(
            key,
            result,
            outcome,
            view.endpoint.consecutive_failures,
            now,
            retry_in=retry_in,
        )
        if outcome.events:
            recorded.extend(outcome.events)
            self._on_events()
        return not isinstance(result, PollError)

    def _record_failed(self, exc: Exception) -> None:
        """Log a failed write once per kind of failure, not once per poll: a failing disk
        fails every poll of every store in the same way."""
        error = f"{type(exc).__name__}: {exc}"
        if error == self._record_error:
            return
        self._record_error = error
        if isinstance(exc, StoreUnavailableError) and exc.reported:
            return  # the store logged it
        log.error("recording the poll failed; it will be judged again next time", exc_info=exc)

    async def _record(
        self, key: EndpointKey, result: PollResult | PollError, now: datetime
    ) -> tuple[EndpointView, PollOutcome]:
        """Load, judge and write one poll: its state and its outbox rows in one transaction."""
        task_ids = [s.task_id for s in result.tasks] if isinstance(result, PollResult) else ()
        async with self._store_locks[key.store]:
            view = await self._state.load_view(key, task_ids)
            notes: dict[str, str] = {}
            if isinstance(result, PollError):
                outcome = judge_failure(view, result, now, self._policy)
            else:
                outcome = judge_success(view, result, now, self._policy)
                notes = endpoint_notes(result, outcome)
            written = self._notes.get(key, {})
            changed = [(k, v) for k, v in notes.items() if written.get(k) != v]
            health_changed = not view.health_stored or outcome.health != view.health
            await self._state.save_poll(
                PollWrite(
                    endpoint=outcome.endpoint,
                    health=outcome.health if health_changed else None,
                    upserts=outcome.upserts,
                    outbox=self._router.rows(outcome.events),
                    notes=changed,
                    owner=self._owner,
                )
            )
        if changed:
            self._notes[key] = {**written, **notes}
            self._note_stats.observed(key, notes)
        return view, outcome

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
            interval=self._intervals[key.store],
            started=started,
            now=self._clock(),
            credentials=source.credentials_version() if auth else 0,
        )
