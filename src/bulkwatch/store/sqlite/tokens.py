"""Refreshed access tokens in SQLite (`access_tokens`, schema v5): one row per store.

A token is written alone and committed at once, not with the next group: the platform retires
the previous token minutes after a refresh, so a crash must not take the new one with it.
"""

from __future__ import annotations

from bulkwatch.store.base import StoredToken
from bulkwatch.store.sqlite.commit import GroupCommit
from bulkwatch.store.sqlite.schema import dt, dt_required, ts, ts_or_none

__all__ = ["SqliteTokens"]

_SELECT = "SELECT token, expires_at, seed, refreshed_at FROM access_tokens WHERE store = ?"
_UPSERT = (
    "INSERT INTO access_tokens (store, token, expires_at, seed, refreshed_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET token = excluded.token, "
    "expires_at = excluded.expires_at, seed = excluded.seed, "
    "refreshed_at = excluded.refreshed_at"
)


class SqliteTokens:
    """The `TokenState` half of `SqliteStore`, on its group-committed connection."""

    _group: GroupCommit

    async def load_token(self, store: str) -> StoredToken | None:
        """The stored token of `store`, or None when none was ever refreshed."""
        row = self._group.connection().execute(_SELECT, (store,)).fetchone()
        if row is None:
            return None
        return StoredToken(store, row[0], dt(row[1]), row[2], dt_required(row[3]))

    async def save_token(self, token: StoredToken) -> None:
        """Keep `token` as its store's current one, committed before returning."""
        params = (
            token.store,
            token.token,
            ts_or_none(token.expires_at),
            token.seed,
            ts(token.refreshed_at),
        )
        with self._group.write() as conn:
            conn.execute(_UPSERT, params)
        self._group.flush()
