"""The dispatcher's pause while the state store cannot record what became of deliveries.

Sending an event whose outcome cannot be written only means sending it again: a failing store
must slow delivery down, never speed it up. While paused the dispatcher sends nothing; it
tries to record the outcomes it holds after a growing wait (the delivery retry backoff, at
most `MAX_PAUSE` seconds), logs one line when the pause begins and one when it ends, and keeps
`bulkwatch_delivery_store_failing` at 1 meanwhile.
"""

from __future__ import annotations

import random
import time

import structlog

from bulkwatch.config import RetrySettings
from bulkwatch.delivery.backoff import backoff_delay
from bulkwatch.store.base import StoreUnavailableError
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["MAX_PAUSE", "StorePause"]

_log = structlog.get_logger("bulkwatch.delivery.dispatcher")

# However long the outage, recovery is noticed within this many seconds.
MAX_PAUSE = 30.0


class StorePause:
    """Whether delivery is paused for a failing store, and for how long to wait next."""

    def __init__(self, retry: RetrySettings, metrics: Metrics, rng: random.Random) -> None:
        self._retry = retry
        self._metrics = metrics
        self._rng = rng
        self.failures = 0  # failed tries since the pause began; 0: not paused
        self._since = 0.0

    @property
    def active(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException, *, held: int) -> None:
        """A store call failed; `held` outcomes now wait in memory to be recorded."""
        self._metrics.delivery_store_errors.inc()
        self.failures += 1
        if self.failures > 1:
            return
        self._since = time.monotonic()
        self._metrics.delivery_store_failing.set(1)
        # A failure the store logged itself is one error already: this line says what follows.
        reported = isinstance(exc, StoreUnavailableError) and exc.reported
        (_log.warning if reported else _log.error)(
            "delivery paused: cannot record outcomes",
            error=f"{type(exc).__name__}: {exc}",
            held=held,
        )

    def succeeded(self, *, recorded: int) -> None:
        """The store took writes again; `recorded` held outcomes were written."""
        if not self.failures:
            return
        _log.info(
            "delivery resumed",
            recorded=recorded,
            failed_tries=self.failures,
            paused_s=round(time.monotonic() - self._since, 3),
        )
        self.failures = 0
        self._metrics.delivery_store_failing.set(0)

    def delay(self) -> float:
        """Seconds to wait before the next try."""
        return min(MAX_PAUSE, backoff_delay(self._retry, self.failures, self._rng))
