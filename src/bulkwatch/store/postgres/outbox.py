"""The PostgreSQL store's outbox: handing out due deliveries and recording what became of them.

`PostgresOutbox` is the part of `PostgresStore` that the dispatcher and the CLI use; the rows
themselves are written by `PostgresStore.save_poll`, in the same transaction as the poll's
state. Every method here is one statement (or one short transaction) on a pooled connection.

Several replicas share the outbox: what `due_deliveries` hands out is claimed for this outbox's
`owner` for `claim_timeout` seconds, and an outcome is recorded only while nobody else took the
row since (`claims`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from bulkwatch.common.redact import redact
from bulkwatch.store.base import Delivery, DeliveryStatus, StoreUnavailableError
from bulkwatch.store.postgres.claims import (
    DUE,
    MARK,
    NEXT_DUE,
    RELEASE,
    RELEASE_ALL,
    REQUEUE,
)
from bulkwatch.store.postgres.rows import DELIVERY_COLUMNS, delivery_from_row, utc

__all__ = ["PostgresOutbox", "WriteOutcome", "affected"]

_SELECT_DELIVERIES = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE status = $1 AND ($2::text IS NULL OR notifier = $2) AND id > $4 "
    "ORDER BY id LIMIT $3"
)
# Newest rows first by id (the primary key, walked backwards), a batch at a time, until
# enough distinct events are seen; then every row of those events through UNIQUE (event_id,
# notifier).
_RECENT_IDS = "SELECT id, event_id FROM outbox WHERE id < $1 ORDER BY id DESC LIMIT $2"
_RECENT_ROWS = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE event_id = ANY($1::text[]) ORDER BY id"
)
_RECENT_BATCH = 256
_NO_ID = 2**63 - 1
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


class WriteOutcome:
    """How the store's last write ended, for readiness: `error` is None after a success."""

    def __init__(self, name: Callable[[], str]) -> None:
        self._name = name
        self.error: str | None = None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        """Around one write: note its failure (and raise it) or its success."""
        try:
            yield
        except Exception as exc:
            self.error = f"{self._name()}: {str(exc) or type(exc).__name__}"
            raise
        self.error = None


# (status, attempts, next_attempt_at, last_error, delivered_at) of one marked row.
_Mark = tuple[str, int | None, datetime | None, str | None, datetime | None]


class PostgresOutbox:
    """The outbox of a `PostgresStore`, on the store's connection pool, shared with other
    replicas: `owner` names this one in the rows it claims, each claim held `claim_timeout`
    seconds. Outcomes are marked in memory and written together by `commit`, one statement
    for the dispatcher's batch."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        writes: WriteOutcome,
        *,
        owner: str,
        claim_timeout: float,
    ) -> None:
        self._pool = pool  # raises while the store is not open
        self._writes = writes
        self.owner = owner
        self.claim_timeout = claim_timeout
        self._marks: dict[int, _Mark] = {}
        self._lost = 0  # marks dropped since the last commit: another replica took the row
        self._claimed = False  # whether this outbox ever claimed a row

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending rows whose next attempt is due, by next_attempt_at then id, without those
        held behind an older pending row of the same notifier and subject, nor those another
        claim holds; each is claimed for this outbox in the same statement."""
        await self.flush_marks()
        async with self._writes.write():
            rows = await self._pool().fetch(DUE, utc(now), limit, self.owner, self.claim_timeout)
        self._claimed = self._claimed or bool(rows)
        due = [delivery_from_row(r) for r in rows]
        due.sort(key=lambda d: (d.next_attempt_at, d.id))
        return due

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending row not held behind another can be handed out (falls
        due, and any claim on it expired), or None when nothing is pending."""
        await self.flush_marks()
        found: datetime | None = await self._pool().fetchval(NEXT_DUE)
        return found

    async def release(self, ids: Sequence[int]) -> None:
        """Free rows handed out but not attempted, so they are handed out again at once."""
        if ids:
            async with self._writes.write():
                await self._pool().execute(RELEASE, list(ids), self.owner)

    async def release_claims(self) -> None:
        """Free every row this outbox still claims (the store closes: whatever it did not
        attempt goes to another replica at once)."""
        if self._claimed:
            await self._pool().execute(RELEASE_ALL, self.owner)
            self._claimed = False

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None:
        """Record a successful delivery (written by the next `commit`)."""
        self._marks[delivery_id] = ("delivered", None, None, None, utc(now))

    async def mark_retry(
        self, delivery_id: int, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        """Keep the row pending and push its next attempt to `next_attempt_at` (written by the
        next `commit`)."""
        marked = ("pending", attempts, utc(next_attempt_at), redact(error), None)
        self._marks[delivery_id] = marked

    async def mark_dead(self, delivery_id: int, *, attempts: int, error: str) -> None:
        """Stop trying a row; it stays listed until requeued (written by the next `commit`)."""
        self._marks[delivery_id] = ("dead", attempts, None, redact(error), None)

    async def _write_marks(self) -> None:
        """Write the marked outcomes; on failure they stay marked (a later mark of the same
        row wins) and the error propagates."""
        marks, self._marks = self._marks, {}
        columns: list[list[Any]] = [list(marks), *map(list, zip(*marks.values(), strict=True))]
        try:
            async with self._writes.write():
                written = await self._pool().fetch(MARK, *columns, self.owner)
        except BaseException:
            self._marks = marks | self._marks
            raise
        self._lost += len(marks) - len(written)

    async def flush_marks(self) -> None:
        """Write the marked outcomes before a read, so it sees them (as the marking
        connection would); on failure they stay marked for `commit`."""
        if self._marks:
            await self._write_marks()

    async def commit(self) -> int:
        """Write the outcomes marked since the last call in one statement; return how many of
        those written since the last call were dropped because another replica took the row
        meanwhile. Raise `StoreUnavailableError` when they cannot be written (they are
        dropped: the caller keeps them and marks them again)."""
        if self._marks:
            try:
                await self._write_marks()
            except Exception as exc:
                count, self._marks = len(self._marks), {}
                raise StoreUnavailableError(
                    f"cannot record {count} delivery outcomes: {self._writes.error}"
                ) from exc
        lost, self._lost = self._lost, 0
        return lost

    async def list_deliveries(
        self,
        status: DeliveryStatus,
        *,
        notifier: str | None = None,
        limit: int = 1000,
        after: int | None = None,
    ) -> list[Delivery]:
        """Rows in one status (optionally of one notifier), oldest id first; `after`: only
        ids above it (the last id of the page before)."""
        await self.flush_marks()
        start = -1 if after is None else after
        rows = await self._pool().fetch(_SELECT_DELIVERIES, status.value, notifier, limit, start)
        return [delivery_from_row(r) for r in rows]

    async def recent_events(self, limit: int, *, before: int | None = None) -> list[Delivery]:
        """Every row of the `limit` newest events among rows with ids below `before`, newest
        event first, each event's rows by id. A poll writes all rows of an event in one
        statement, so a page never splits an event."""
        await self.flush_marks()
        pool = self._pool()
        events: dict[str, None] = {}  # insertion-ordered set, newest first
        cursor = _NO_ID if before is None else before
        while len(events) < limit:
            batch = await pool.fetch(_RECENT_IDS, cursor, _RECENT_BATCH)
            for _, event_id in batch:
                if len(events) == limit:
                    break
                events.setdefault(event_id)
            if len(batch) < _RECENT_BATCH:
                break
            cursor = batch[-1][0]
        if not events:
            return []
        rows = map(delivery_from_row, await pool.fetch(_RECENT_ROWS, list(events)))
        order = {event_id: i for i, event_id in enumerate(events)}
        return sorted(rows, key=lambda d: order[d.event_id])  # stable: ids within an event

    async def requeue_dead(
        self, now: datetime, *, ids: Sequence[int] | None = None, notifier: str | None = None
    ) -> int:
        """Make dead rows pending again, due `now`, with attempts reset, last_error kept and
        any claim cleared; filter by `ids` and/or `notifier` (neither: every dead row). Return
        how many."""
        await self.flush_marks()
        chosen = None if ids is None else list(ids)
        async with self._writes.write():
            status = await self._pool().execute(REQUEUE, utc(now), notifier, chosen)
        return affected(status)

    async def outbox_counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """(notifier, status) -> rows, for the outbox gauges."""
        await self.flush_marks()
        async with self._pool().acquire() as conn, conn.transaction():
            if await conn.fetchval(_TRY_FOLD_LOCK):
                await conn.execute(_FOLD)
            rows = await conn.fetch(_COUNTS)
        return {(n, DeliveryStatus(s)): int(c) for n, s, c in rows}
