"""The dispatcher: delivers outbox rows to notifiers, retries with backoff, dead-letters.

Delivery is at least once. A row is marked only after its attempt finished, so a crash or a
cancelled send leaves it pending and it is sent again later, with the same event id for
receivers to de-duplicate. The outcomes of a batch are committed before the next batch is
read; when the store cannot record them (a read-only or failing disk), the dispatcher keeps
them in memory, pauses (`StorePause`: nothing is sent, the store is tried again after a
growing wait) and records them once the store takes writes again, so an outage costs no
repeated send at all.

Each notifier gets the events of one subject (a task, or one store's up and down) in order:
the outbox hands out a row only when no older row of its notifier and subject is pending, so
a batch holds at most one row per subject and notifier, and a later event waits for the one
before it to be delivered or dead. Rows of different subjects are sent concurrently (up to
`delivery.concurrency` at a time, several to the same notifier in parallel).

What each attempt comes to (delivered, retried after a backoff, dead) is decided and
recorded by `delivery.outcome`.

Replicas sharing a PostgreSQL outbox each run a dispatcher: the outbox claims what it hands
out for `delivery.claim_timeout`, so a row is attempted by one replica at a time
(`delivery.claims`). A send starts only in the first half of its batch's claims (a row still
waiting for a slot then is given back): with notifier timeouts at most half the claim
(checked with the config), no claim runs out under a send in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import structlog

from bulkwatch.config import DeliverySettings, RetrySettings
from bulkwatch.delivery.backoff import backoff_delay
from bulkwatch.delivery.claims import Claims
from bulkwatch.delivery.outcome import Judge, Outcome, record
from bulkwatch.delivery.pause import StorePause
from bulkwatch.model import as_utc, utcnow
from bulkwatch.notifiers.base import DeliveryError, Notifier, OutgoingEvent
from bulkwatch.store.base import Delivery, DeliveryStatus, Outbox
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["Dispatcher", "backoff_delay"]

_log = structlog.get_logger("bulkwatch")

# A floor for the idle wait, so that run() never spins on a row that stays due.
_MIN_WAIT = 0.05


class Dispatcher:
    """Sends due outbox rows through their notifiers and records every outcome."""

    def __init__(
        self,
        outbox: Outbox,
        notifiers: Mapping[str, Notifier],
        retry: RetrySettings,
        delivery: DeliverySettings,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        log_deliveries: bool = True,
    ) -> None:
        self._store = outbox
        self._notifiers = dict(notifiers)
        self._delivery = delivery
        self._metrics = metrics
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter only
        self._judge = Judge(retry, metrics, self._rng, clock, log_delivered=log_deliveries)
        self._slots = asyncio.Semaphore(delivery.concurrency)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = 0
        self._stopping = False
        self._inflight: set[asyncio.Task[Outcome | None]] = set()
        self._pause = StorePause(retry, metrics, self._rng)
        self._held: list[Outcome] = []  # outcomes the store could not record yet
        self._claims = Claims(outbox, metrics)
        self._batch_error: Exception | None = None
        self._start_by = clock()  # sends of the batch in hand start before this (its claims)

    @property
    def paused(self) -> bool:
        """Whether delivery waits for the store to take writes again."""
        return self._pause.active

    def set_notifiers(self, notifiers: Mapping[str, Notifier]) -> None:
        """Send through these notifiers from the next batch on (a config reload); sends in
        flight finish on the notifier they started with."""
        self._notifiers = dict(notifiers)

    def wake(self) -> None:
        """Ask `run()` to look for due rows now (the app calls this after writing events)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Attempt every due row (up to `delivery.batch`); return how many were attempted.

        Rows whose notifier is gone are dead-lettered and count as attempted; rows not started
        because `drain()` began, or because the store failed, are left pending and do not.
        Outcomes the store could not record are first recorded again; while that fails,
        nothing is attempted.
        """
        if self._stopping:
            return 0
        self._busy += 1
        self._idle.clear()
        try:
            if self._held and not await self._record_held():
                return 0
            now = self._clock()
            self._start_by = now + timedelta(seconds=self._delivery.claim_timeout / 2)
            try:
                due = await self._store.due_deliveries(now, self._delivery.batch)
            except Exception as exc:  # noqa: BLE001 - any store's errors pause delivery
                self._pause.failed(exc, held=0)
                return 0
            if not due:
                self._pause.succeeded(recorded=0)
                return 0
            return await self._batch(due)
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def _batch(self, due: list[Delivery]) -> int:
        self._batch_error = None
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._process(row)) for row in due]
            self._inflight.update(tasks)
            for task in tasks:
                task.add_done_callback(self._inflight.discard)
        results = [None if task.cancelled() else task.result() for task in tasks]
        outcomes = [o for o in results if o is not None]
        self._claims.not_attempted(r.id for r, o in zip(due, results, strict=True) if o is None)
        if self._batch_error is None and outcomes:
            try:
                self._claims.lost(await self._store.commit())
            except Exception as exc:  # noqa: BLE001 - any store's errors pause delivery
                self._batch_error = exc
        if self._batch_error is not None:
            self._held = outcomes
            self._pause.failed(self._batch_error, held=len(outcomes))
        else:
            self._pause.succeeded(recorded=0)
            await self._claims.give_back()
        return len(outcomes)

    async def _record_held(self) -> bool:
        """Mark the held outcomes again; True once they are committed."""
        try:
            for outcome in self._held:
                await record(self._store, outcome)
            self._claims.lost(await self._store.commit())
        except Exception as exc:  # noqa: BLE001 - any store's errors keep the pause
            self._pause.failed(exc, held=len(self._held))
            return False
        recorded, self._held = len(self._held), []
        self._pause.succeeded(recorded=recorded)
        await self._claims.give_back()
        return True

    async def run(self) -> None:
        """Deliver until `drain()`: a full batch loops at once, else wait for the next due
        row, `delivery.idle_interval` or `wake()`, whichever comes first. While the store
        fails, wait out the pause instead (`wake()` does not shorten it)."""
        await self._refresh_gauges_logged()
        while not self._stopping:
            # Cleared before looking, so a wake() during run_once() is not lost.
            self._wake.clear()
            attempted = await self.run_once()
            if self._pause.active:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._pause.delay()):
                        await self._stop.wait()
                continue
            if attempted:
                await self._refresh_gauges_logged()
            if attempted >= self._delivery.batch:
                continue
            await self._wait(await self._idle_wait())

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a grace period, then cancel
        """Stop starting sends, let the ones in flight finish for up to `timeout` seconds,
        then cancel the rest (they stay pending and go out after the next start).

        `run()` returns once the batch in hand is done; a drained dispatcher stays stopped.
        """
        self._stopping = True
        self._wake.set()
        self._stop.set()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            pending = [task for task in self._inflight if not task.done()]
            _log.warning(
                "delivery drain timed out; cancelling in-flight deliveries",
                in_flight=len(pending),
                timeout=timeout,
            )
            for task in pending:
                task.cancel()
            # Cancelled sends only unwind now (nothing is recorded for them), so this is quick.
            await self._idle.wait()

    async def refresh_gauges(self) -> None:
        """Set `outbox_pending` and `outbox_dead` of every configured notifier from the store."""
        counts = await self._store.outbox_counts()
        for name in self._notifiers:
            pending = counts.get((name, DeliveryStatus.PENDING), 0)
            dead = counts.get((name, DeliveryStatus.DEAD), 0)
            self._metrics.outbox_pending.labels(notifier=name).set(pending)
            self._metrics.outbox_dead.labels(notifier=name).set(dead)

    async def _refresh_gauges_logged(self) -> None:
        try:
            await self.refresh_gauges()
        except Exception:  # noqa: BLE001 - a gauge is never worth stopping delivery for
            _log.exception("could not refresh outbox gauges")

    async def _idle_wait(self) -> float:
        wait = self._delivery.idle_interval
        try:
            next_due = await self._store.next_due_at()
        except Exception:  # noqa: BLE001 - any store's errors; the idle interval still works
            _log.exception("could not read the next due delivery")
            return wait
        if next_due is not None:
            wait = min(wait, (as_utc(next_due) - self._clock()).total_seconds())
        return max(wait, _MIN_WAIT)

    async def _wait(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _process(self, row: Delivery) -> Outcome | None:
        """Attempt one row and mark its outcome; None when it was left for later. After a
        store error in this batch, outcomes are no longer marked one by one (the batch keeps
        them all) and rows not yet started are left."""
        outcome = await self._attempt(row)
        if outcome is not None and self._batch_error is None:
            try:
                await record(self._store, outcome)
            except Exception as exc:  # noqa: BLE001 - any store's errors pause delivery
                if self._batch_error is None:
                    self._batch_error = exc
        return outcome

    async def _attempt(self, row: Delivery) -> Outcome | None:
        notifier = self._notifiers.get(row.notifier)
        if notifier is None:
            return self._judge.dead(row, row.attempts, f"notifier {row.notifier} is not configured")
        try:
            cloudevent = json.loads(row.body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            cloudevent = None
        if not isinstance(cloudevent, dict):
            # Retrying cannot repair a stored body; keep the row for `deliveries list`.
            return self._judge.dead(row, row.attempts, "stored event body is not a JSON object")
        attempt = row.attempts + 1
        event = OutgoingEvent(
            id=row.event_id,
            type=row.event_type,
            store=row.store,
            body=row.body,
            cloudevent=cloudevent,
            attempt=attempt,
        )
        async with self._slots:
            if self._stopping or self._batch_error is not None or self._clock() >= self._start_by:
                return None
            error = await self._send(notifier, event)
        subject = cloudevent.get("subject")
        return self._judge.attempt(
            row, attempt, error, subject if isinstance(subject, str) else row.store
        )

    async def _send(self, notifier: Notifier, event: OutgoingEvent) -> DeliveryError | None:
        started = time.perf_counter()
        try:
            await notifier.send(event)
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a notifier's bug must not stop delivery
            _log.exception(
                "notifier raised an unexpected error; treating it as retryable",
                notifier=notifier.name,
                event_id=event.id,
                event_type=event.type,
            )
            return DeliveryError(f"{type(exc).__name__}: {exc}")
        finally:
            self._metrics.delivery_duration.labels(notifier=notifier.name).observe(
                time.perf_counter() - started
            )
        return None
