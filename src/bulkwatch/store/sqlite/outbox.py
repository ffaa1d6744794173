"""The SQLite store's outbox: handing out due deliveries and recording what became of them.

`SqliteOutbox` is the part of `SqliteStore` that the dispatcher and the CLI use; the rows
themselves are written by `SqliteStore.save_poll`, in the same transaction as the poll's state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from bulkwatch.store.base import Delivery, DeliveryStatus, StoreUnavailableError
from bulkwatch.store.sqlite.commit import GroupCommit
from bulkwatch.store.sqlite.schema import DELIVERY_COLUMNS, delivery_from_row, dt_required, ts

__all__ = ["SqliteOutbox"]

_SELECT_DUE = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
)
_SELECT_DELIVERIES = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE status = :status AND (:notifier IS NULL OR notifier = :notifier) "
    "ORDER BY id LIMIT :limit"
)
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
        """Pending rows whose next attempt is due, by next_attempt_at then id."""
        if self._group.uncommitted_outbox:
            self._group.flush()  # never hand out a row whose poll could still roll back
        rows = self._group.connection().execute(_SELECT_DUE, (ts(now), limit))
        return [delivery_from_row(r) for r in rows]

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending row falls due, or None when nothing is pending."""
        row = (
            self._group.connection()
            .execute(
                "SELECT next_attempt_at FROM outbox WHERE status = 'pending' "
                "ORDER BY next_attempt_at LIMIT 1"
            )
            .fetchone()
        )
        return None if row is None else dt_required(row[0])

    async def commit(self) -> None:
        """Make the outcomes marked since the last call durable now; raise
        `StoreUnavailableError` when they cannot be, or when a commit since the first of them
        failed (their group was rolled back, so they must be marked again)."""
        lost_before, self._lost_before = self._lost_before, None
        try:
            self._group.flush()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"{self._group.name}: {exc}") from exc
        if lost_before is not None and self._group.groups_lost != lost_before:
            raise StoreUnavailableError(
                f"{self._group.name}: delivery outcomes were rolled back: {self._group.last_error}"
            )

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
            (attempts, ts(next_attempt_at), error, delivery_id),
        )

    async def mark_dead(self, delivery_id: int, *, attempts: int, error: str) -> None:
        """Stop trying a row; it stays listed until requeued."""
        self._mark(
            "UPDATE outbox SET status = 'dead', attempts = ?, last_error = ? WHERE id = ?",
            (attempts, error, delivery_id),
        )

    async def list_deliveries(
        self, status: DeliveryStatus, *, notifier: str | None = None, limit: int = 1000
    ) -> list[Delivery]:
        """Rows in one status (optionally of one notifier), oldest id first."""
        params = {"status": status.value, "notifier": notifier, "limit": limit}
        rows = self._group.connection().execute(_SELECT_DELIVERIES, params)
        return [delivery_from_row(r) for r in rows]

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
