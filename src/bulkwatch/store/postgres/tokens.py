"""Refreshed access tokens in PostgreSQL (`access_tokens`, schema v3): one row per store,
written in a statement of its own (so committed before `save_token` returns)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from bulkwatch.store.base import StoredToken
from bulkwatch.store.postgres.outbox import WriteOutcome
from bulkwatch.store.postgres.rows import utc, utc_or_none

__all__ = ["PostgresTokens"]

_SELECT = "SELECT token, expires_at, seed, refreshed_at FROM access_tokens WHERE store = $1"
_UPSERT = (
    "INSERT INTO access_tokens (store, token, expires_at, seed, refreshed_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (store) DO UPDATE SET token = excluded.token, "
    "expires_at = excluded.expires_at, seed = excluded.seed, "
    "refreshed_at = excluded.refreshed_at"
)


class PostgresTokens:
    """The `TokenState` half of `PostgresStore`, on its pool."""

    _connections: Callable[[], asyncpg.Pool]
    _writes: WriteOutcome

    async def load_token(self, store: str) -> StoredToken | None:
        """The stored token of `store`, or None when none was ever refreshed."""
        row = await self._connections().fetchrow(_SELECT, store)
        if row is None:
            return None
        return StoredToken(store, row[0], utc_or_none(row[1]), row[2], utc(row[3]))

    async def save_token(self, token: StoredToken) -> None:
        """Keep `token` as its store's current one, committed before returning."""
        async with self._writes.write():
            await self._connections().execute(
                _UPSERT,
                token.store,
                token.token,
                utc_or_none(token.expires_at),
                token.seed,
                utc(token.refreshed_at),
            )
