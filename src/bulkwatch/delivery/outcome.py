"""What became of one delivery attempt: judged (delivered, retry later, dead) and recorded.

`Judge` turns an attempt's result into an `Outcome`, counting it and logging failures;
`record` marks an outcome in the outbox. The dispatcher decides when to record (at once, or
later when the store could not take the write).

Backoff uses "equal jitter" (`common.backoff`): after n failed attempts the wait is uniform
in [d/2, d] with d = min(max_delay, initial * 2**(n-1)). A `Retry-After` from the receiver
(capped at max_delay) is a lower bound.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from bulkwatch.config import RetrySettings
from bulkwatch.delivery.backoff import backoff_delay
from bulkwatch.model import as_utc
from bulkwatch.notifiers.base import DeliveryError
from bulkwatch.store.base import Delivery, DeliveryStatus, Outbox
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["Judge", "Outcome", "record"]

_log = structlog.get_logger("bulkwatch")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt, to be marked in the store: `status` PENDING is a retry
    due at `at`; DELIVERED was delivered at `at`."""

    row: Delivery
    status: DeliveryStatus
    attempts: int
    at: datetime
    error: str | None = None


class Judge:
    """Decides each attempt's outcome under the retry settings; counts and logs it."""

    def __init__(
        self,
        retry: RetrySettings,
        metrics: Metrics,
        rng: random.Random,
        clock: Callable[[], datetime],
        *,
        log_delivered: bool = True,
    ) -> None:
        self._log_delivered = _log.info if log_delivered else _log.debug
        self._retry = retry
        self._metrics = metrics
        self._rng = rng
        self._clock = clock

    def attempt(
        self, row: Delivery, attempt: int, error: DeliveryError | None, subject: str
    ) -> Outcome:
        """The outcome of attempt number `attempt` of `row` (its event about `subject`), which
        failed with `error` (or succeeded: None)."""
        now = self._clock()
        if error is None:
            self._count(row, "delivered")
            kind = row.event_type.removeprefix("bulkwatch.")
            self._log_delivered(
                f"delivered {subject} {kind} to {row.notifier}",
                event_id=row.event_id,
                attempt=attempt,
            )
            return Outcome(row, DeliveryStatus.DELIVERED, attempt, now)
        message = str(error) or type(error).__name__
        if error.permanent:
            return self.dead(row, attempt, message)
        age = (now - as_utc(row.created_at)).total_seconds()
        if attempt >= self._retry.max_attempts:
            return self.dead(row, attempt, f"{message} (gave up after {attempt} attempts)")
        if age >= self._retry.max_age:
            return self.dead(row, attempt, f"{message} (gave up after {age:.0f}s)")
        delay = backoff_delay(self._retry, attempt, self._rng, error.retry_after)
        next_at = now + timedelta(seconds=delay)
        self._count(row, "retry")
        _log.warning(
            "delivery failed",
            **_fields(row),
            attempt=attempt,
            error=message,
            next_attempt_at=next_at.isoformat(),
        )
        return Outcome(row, DeliveryStatus.PENDING, attempt, next_at, message)

    def dead(self, row: Delivery, attempts: int, error: str) -> Outcome:
        """Give up on `row` after `attempts` attempts, keeping it as a dead letter."""
        self._count(row, "dead")
        _log.error("delivery dead-lettered", **_fields(row), attempts=attempts, error=error)
        return Outcome(row, DeliveryStatus.DEAD, attempts, self._clock(), error)

    def _count(self, row: Delivery, outcome: str) -> None:
        self._metrics.deliveries.labels(notifier=row.notifier, outcome=outcome).inc()


async def record(outbox: Outbox, outcome: Outcome) -> None:
    """Mark `outcome` in the outbox (made durable by the outbox's next `commit`)."""
    row_id, attempts, error = outcome.row.id, outcome.attempts, outcome.error or ""
    if outcome.status is DeliveryStatus.DELIVERED:
        await outbox.mark_delivered(row_id, outcome.at)
    elif outcome.status is DeliveryStatus.DEAD:
        await outbox.mark_dead(row_id, attempts=attempts, error=error)
    else:
        await outbox.mark_retry(row_id, attempts=attempts, next_attempt_at=outcome.at, error=error)


def _fields(row: Delivery) -> dict[str, Any]:
    return {"notifier": row.notifier, "event_id": row.event_id, "event_type": row.event_type}
