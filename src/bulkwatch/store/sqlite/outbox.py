"""The SQLite store's outbox: handing out due deliveries and recording what became of them.

`SqliteOutbox` is the part of `SqliteStore` that the dispatcher and the CLI use; the rows
themselves are written by `SqliteStore.save_poll`, in the same transaction as the poll's state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from bulkwatch.common.redact import redact
from bulkwatch.store.base import Delivery, DeliveryStatus, StoreUnavailableError
from bulkwatch.store.sqlite.commit import GroupCommit
from bulkwatch.store.sqlite.schema import DELIVERY_COLUMNS, delivery_from_row, dt_required, ts

__all__ = ["SqliteOutbox"]


def _by_id(delivery: Delivery) -> int:
    return delivery.id


# A pending row waits while an older pending row of its notifier and subject exists (ordered
# delivery); a row without a subject never waits. One probe of `outbox_pending_subject` each.
_NOT_HELD = (
    "NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.status = 'pending' "
    "AND earlier.notifier = outbox.notifier AND earlier.subject = outbox.subject "
    "AND earlier.id < outbox.id)"
)
_SELECT_DUE = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    f"WHERE status = 'pending' AND next_attempt_at <= ? AND {_NOT_HELD} "
    "ORDER BY next_attempt_at, id LIMIT ?"
)
_NEXT_DUE = (
    f"SELECT next_attempt_at FROM outbox WHERE status = 'pending' AND {_NOT_HELD} "  # noqa: S608
    "ORDER BY next_attempt_at LIMIT 1"
)
_SELECT_DELIVERIES = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE status = :status AND (:notifier IS NULL OR notifier = :notifier) AND id > :after "
    "ORDER BY id LIMIT :limit"
)
# Newest rows first by id (the rowid: no index needed), a batch at a time, until enough
# distinct events are seen; then every row of those events through UNIQUE (event_id, ...).
_RECENT_IDS = "SELECT id, event_id FROM outbox WHERE id < ? ORDER BY id DESC LIMIT ?"
_RECENT_BATCH = 256
_NO_ID = 2**63 - 1
_REQUEUE = (
    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = :now "
    "WHERE status = 'dead' AND (:notifier IS NULL OR notifier = :notifier)"
)
_REQUEUE_ID = _REQUEUE + " AND id = :id"


class SqliteOutbox:
    """The outbox of a `SqliteStore`, on the store's group-committed connection."""

    def __init__(self, group: GroupCommit) -> None:
        self._group = group
        # `group.groups_lost` when the first outcome not yet confirmed by `commit` was written.
        self._lost_before: int | None = None

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending rows whose next attempt is due, by next_attempt_at then id, without those
        held behind an older pending row of the same notifier and subject."""
        if self._group.uncommitted_outbox:
            self._group.flush()  # never hand out a row whose poll could still roll back
        rows = self._group.connection().execute(_SELECT_DUE, (ts(now), limit))
        return [delivery_from_row(r) for r in rows]

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending row not held behind another falls due, or None when
        nothing is pending."""
        row = self._group.connection().execute(_NEXT_DUE).fetchone()
        return None if row is None else dt_required(row[0])

    async def release(self, ids: Sequence[int]) -> None:
        """Nothing to free: one process uses the file, so rows are never claimed."""

    async def commit(self) -> int:
        """Make the outcomes marked since the last call durable now; raise
        `StoreUnavailableError` when they cannot be, or when a commit since the first of them
        failed (their group was rolled back, so they must be marked again). Return 0: no
        other process takes rows from this outbox, so no outcome is ever dropped."""
        lost_before, self._lost_before = self._lost_before, None
        try:
            self._group.flush()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"{self._group.name}: {exc}") from exc
        if lost_before is not None and self._group.groups_lost != lost_before:
            raise StoreUnavailableError(
                f"{self._group.name}: delivery outcomes were rolled back: {self._group.last_error}"
            )
        return 0

    def _mark(self, sql: str, params: Sequence[object]) -> None:
        if self._lost_before is None:
            self._lost_before = self._group.groups_lost
        try:
            self._group.statement(sql, params)
        except BaseException:
            # The caller learns of this failure here and marks the whole round again.
            self._lost_before = None
            raise

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None:
        """Record a successful delivery."""
        self._mark(
            "UPDATE outbox SET status = 'delivered', delivered_at = ? WHERE id = ?",
            (ts(now), delivery_id),
        )

    async def mark_retry(
        self, delivery_id: int, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        """Keep the row pending and push its next attempt to `next_attempt_at`."""
        self._mark(
            "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?, "
            "last_error = ? WHERE id = ?",
            (attempts, ts(next_attempt_at), redact(error), delivery_id),
        )

    async def mark_dead(self, delivery_id: int, *, attempts: int, error: str) -> None:
        """Stop trying a row; it stays listed until requeued."""
        self._mark(
            "UPDATE outbox SET status = 'dead', attempts = ?, last_error = ? WHERE id = ?",
            (attempts, redact(error), delivery_id),
        )

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
        params = {
            "status": status.value,
            "notifier": notifier,
            "limit": limit,
            "after": -1 if after is None else after,
        }
        rows = self._group.connection().execute(_SELECT_DELIVERIES, params)
        return [delivery_from_row(r) for r in rows]

    async def recent_events(self, limit: int, *, before: int | None = None) -> list[Delivery]:
        """Every row of the `limit` newest events among rows with ids below `before`, newest
        event first, each event's rows by id. A poll writes all rows of an event in one
        statement, so their ids are adjacent and a page never splits an event."""
        conn = self._group.connection()
        events: dict[str, None] = {}  # insertion-ordered set, newest first
        cursor = _NO_ID if before is None else before
        while len(events) < limit:
            batch = conn.execute(_RECENT_IDS, (cursor, _RECENT_BATCH)).fetchall()
            for _, event_id in batch:
                if len(events) == limit:
                    break
                events.setdefault(event_id)
            if len(batch) < _RECENT_BATCH:
                break
            cursor = batch[-1][0]
        if not events:
            return []
        marks = ", ".join("?" * len(events))
        sql = f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE event_id IN ({marks})"  # noqa: S608
        rows = sorted(map(delivery_from_row, conn.execute(sql, list(events))), key=_by_id)
        order = {event_id: i for i, event_id in enumerate(events)}
        return sorted(rows, key=lambda d: order[d.event_id])  # stable: ids within an event

    async def requeue_dead(
        self, now: datetime, *, ids: Sequence[int] | None = None, notifier: str | None = None
    ) -> int:
        """Make dead rows pending again, due `now`, with attempts reset and last_error kept;
        filter by `ids` and/or `notifier` (neither: every dead row). Return how many."""
        params = {"now": ts(now), "notifier": notifier}
        with self._group.write(outbox=True) as conn:
            if ids is None:
                return conn.execute(_REQUEUE, params).rowcount
            return conn.executemany(_REQUEUE_ID, ({**params, "id": i} for i in ids)).rowcount

    async def outbox_counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """(notifier, status) -> rows, for the outbox gauges."""
        # Kept by triggers (schema v2): a few rows, however large the outbox has grown.
        rows = self._group.connection().execute(
            "SELECT notifier, status, n FROM outbox_counts WHERE n > 0"
        )
        return {(n, DeliveryStatus(s)): c for n, s, c in rows}
