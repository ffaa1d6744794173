"""The PostgreSQL store's outbox: handing out due deliveries and recording what became of them.

`PostgresOutbox` is the part of `PostgresStore` that the dispatcher and the CLI use; the rows
themselves are written by `PostgresStore.save_poll`, in the same transaction as the poll's
state. Every method here is one statement (or one short transaction) on a pooled connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg

from bulkwatch.store.base import Delivery, DeliveryStatus
from bulkwatch.store.postgres.rows import DELIVERY_COLUMNS, delivery_from_row, utc

__all__ = ["PostgresOutbox", "affected"]

_SELECT_DUE = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
)
_SELECT_DELIVERIES = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE status = $1 AND ($2::text IS NULL OR notifier = $2) ORDER BY id LIMIT $3"
)
_REQUEUE = (
    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1 "
    "WHERE status = 'dead' AND ($2::text IS NULL OR notifier = $2) "
    "AND ($3::bigint[] IS NULL OR id = ANY($3))"
)
# Folds the appended count changes into the totals. Only one connection folds at a time
# (the try-lock below): two folds upserting the same totals in different orders could
# deadlock, and a fold that finds the lock taken has nothing to add anyway.
_TRY_FOLD_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('bulkwatch.outbox_counts'), 0)"
_FOLD = """
    WITH moved AS (DELETE FROM outbox_count_changes RETURNING notifier, status, n)
    INSERT INTO outbox_counts AS c (notifier, status, n)
    SELECT notifier, status, sum(n) FROM moved GROUP BY notifier, status
    ON CONFLICT (notifier, status) DO UPDATE SET n = c.n + excluded.n
"""
# One statement, one snapshot: a change is counted either among the totals or among the
# changes, never in both and never in neither, whoever folds meanwhile.
_COUNTS = """
    SELECT notifier, status, sum(n) FROM (
        SELECT notifier, status, n FROM outbox_counts
        UNION ALL
        SELECT notifier, status, n FROM outbox_count_changes
    ) AS counted
    GROUP BY notifier, status HAVING sum(n) > 0
"""


def affected(status: str) -> int:
    """The row count of a command status such as `UPDATE 3` or `INSERT 0 1`."""
    return int(status.rpartition(" ")[2])


class PostgresOutbox:
    """The outbox of a `PostgresStore`, on the store's connection pool."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool  # raises while the store is not open

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending rows whose next attempt is due, by next_attempt_at then id."""
        rows = await self._pool().fetch(_SELECT_DUE, utc(now), limit)
        return [delivery_from_row(r) for r in rows]

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending row falls due, or None when nothing is pending."""
        found: datetime | None = await self._pool().fetchval(
            "SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'"
        )
        return found

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None:
        """Record a successful delivery."""
        await self._pool().execute(
            "UPDATE outbox SET status = 'delivered', delivered_at = $1 WHERE id = $2",
            utc(now),
            delivery_id,
        )

    async def mark_retry(
        self, delivery_id: int, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        """Keep the row pending and push its next attempt to `next_attempt_at`."""
        await self._pool().execute(
            "UPDATE outbox SET status = 'pending', attempts = $1, next_attempt_at = $2, "
            "last_error = $3 WHERE id = $4",
            attempts,
            utc(next_attempt_at),
            error,
            delivery_id,
        )

    async def mark_dead(self, delivery_id: int, *, attempts: int, error: str) -> None:
        """Stop trying a row; it stays listed until requeued."""
        await self._pool().execute(
            "UPDATE outbox SET status = 'dead', attempts = $1, last_error = $2 WHERE id = $3",
            attempts,
            error,
            delivery_id,
        )

    async def list_deliveries(
        self, status: DeliveryStatus, *, notifier: str | None = None, limit: int = 1000
    ) -> list[Delivery]:
        """Rows in one status (optionally of one notifier), oldest id first."""
        rows = await self._pool().fetch(_SELECT_DELIVERIES, status.value, notifier, limit)
        return [delivery_from_row(r) for r in rows]

    async def requeue_dead(
        self, now: datetime, *, ids: Sequence[int] | None = None, notifier: str | None = None
    ) -> int:
        """Make dead rows pending again, due `now`, with attempts reset and last_error kept;
        filter by `ids` and/or `notifier` (neither: every dead row). Return how many."""
        chosen = None if ids is None else list(ids)
        return affected(await self._pool().execute(_REQUEUE, utc(now), notifier, chosen))

    async def outbox_counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """(notifier, status) -> rows, for the outbox gauges."""
        async with self._pool().acquire() as conn, conn.transaction():
            if await conn.fetchval(_TRY_FOLD_LOCK):
                await conn.execute(_FOLD)
            rows = await conn.fetch(_COUNTS)
        return {(n, DeliveryStatus(s)): int(c) for n, s, c in rows}
