"""The dispatcher's side of the outbox's claims, for replicas sharing a PostgreSQL outbox.

The outbox claims every row it hands out; another replica gets the row only once its outcome
is recorded, it is given back, or the claim times out (`delivery.claim_timeout`). Rows handed
out but not attempted (a drain, a store error mid-batch) are given back as soon as the store
takes writes, so they go out at once rather than after the timeout. An outcome the outbox
drops, because another replica took the row after our claim timed out, is counted and logged:
that replica's attempt, under the same event id, stands. With SQLite nothing is ever claimed
away and giving back does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from bulkwatch.store.base import Outbox
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["Claims"]

_log = structlog.get_logger("bulkwatch")


class Claims:
    """Rows to give back to the outbox, and outcomes it dropped."""

    def __init__(self, outbox: Outbox, metrics: Metrics) -> None:
        self._outbox = outbox
        self._metrics = metrics
        self._unattempted: list[int] = []

    def not_attempted(self, ids: Iterable[int]) -> None:
        """Rows handed out that were not attempted: give them back at the next `give_back`."""
        self._unattempted.extend(ids)

    async def give_back(self) -> None:
        """Free the rows not attempted. Best effort: when the store refuses (counted and
        logged), their claims time out instead."""
        if not self._unattempted:
            return
        ids, self._unattempted = self._unattempted, []
        try:
            await self._outbox.release(ids)
        except Exception as exc:  # noqa: BLE001 - any store's errors; the claims time out
            self._metrics.delivery_store_errors.inc()
            _log.warning(
                "could not give back deliveries not attempted; they go out once their "
                "claims time out (delivery.claim_timeout)",
                rows=len(ids),
                error=f"{type(exc).__name__}: {exc}",
            )

    def lost(self, dropped: int) -> None:
        """Count, and log once for the batch, outcomes the outbox dropped (`commit`)."""
        if dropped:
            self._metrics.delivery_claims_lost.inc(dropped)
            _log.warning(
                "delivery outcomes dropped: another replica took the rows after their claims "
                "timed out (delivery.claim_timeout)",
                dropped=dropped,
            )
