"""Store leases in PostgreSQL (`leases` and `lease_owners`, schema v5): which replica polls
which store.

Every time is the database's `now()` (the start of the statement's transaction, which is no
earlier than the moment the replica sent the statement): a lease is written as `now() + ttl`,
so it lasts at least `ttl` from when the replica sent the statement, by any clock running at
the same rate; a replica that stops polling well before that (`daemon/held.py`) never polls a
store whose lease may have passed to another. A claim is one
`INSERT ... ON CONFLICT ... DO UPDATE ... WHERE expires_at < now()`: on a store another
replica claims at the same moment, PostgreSQL locks the row and evaluates the condition
against the newest version, so only one of them gets it. Rows are written in store order, so
two claims never wait for each other in a cycle. A poll write fenced by its owner
(`poll_sql`) reads its store's row `FOR SHARE`, so a takeover waits for the write to commit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta

import asyncpg

from bulkwatch.store.leasing import Claimed, Holder

__all__ = ["MIGRATION", "PostgresLeases"]

# Schema v5: one row per store ever claimed, and one per live replica (for the fair share,
# which counts replicas that hold nothing yet).
MIGRATION = (
    """
    CREATE TABLE leases (
        store text COLLATE "C" PRIMARY KEY,
        owner text COLLATE "C" NOT NULL,
        expires_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX leases_by_owner ON leases (owner, store)",
    """
    CREATE TABLE lease_owners (
        owner text COLLATE "C" PRIMARY KEY,
        expires_at timestamptz NOT NULL
    )
    """,
)

_BEAT = (
    "INSERT INTO lease_owners (owner, expires_at) VALUES ($1, now() + $2::interval) "
    "ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at"
)
# Candidates are taken in an order of the owner's own (a hash), so that replicas claiming at
# once mostly ask for different stores; they are written in store order. A candidate whose
# row exists (expired) and named another owner is a takeover: the row is updated in place.
_CLAIM = f"""
    WITH beat AS ({_BEAT}),
    wanted AS (
        SELECT s.store, l.owner AS previous FROM unnest($3::text[]) AS s(store)
        LEFT JOIN leases l ON l.store = s.store
        WHERE l.store IS NULL OR l.expires_at < now()
        ORDER BY md5(s.store || $1::text) LIMIT $4
    ),
    taken AS (
        INSERT INTO leases (store, owner, expires_at)
        SELECT store, $1, now() + $2::interval FROM wanted ORDER BY store
        ON CONFLICT (store) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
        WHERE leases.expires_at < now()
        RETURNING store, xmax <> 0 AS existed
    )
    SELECT t.store, t.existed AND w.previous IS DISTINCT FROM $1::text
    FROM taken t JOIN wanted w USING (store)
"""  # noqa: S608 - built from constants only
_RENEW = f"""
    WITH beat AS ({_BEAT})
    UPDATE leases SET expires_at = now() + $2::interval
    WHERE owner = $1 AND expires_at >= now()
    RETURNING store
"""  # noqa: S608 - built from constants only
_RELEASE_SOME = "DELETE FROM leases WHERE owner = $1 AND store = ANY($2::text[])"
_RELEASE_ALL = """
    WITH gone AS (DELETE FROM lease_owners WHERE owner = $1)
    DELETE FROM leases WHERE owner = $1
"""
_OWNERS = "SELECT owner FROM lease_owners WHERE expires_at >= now() ORDER BY owner"
_HOLDERS = """
    SELECT store, owner, expires_at FROM leases
    WHERE store = ANY($1::text[]) AND expires_at >= now() ORDER BY store
"""


class PostgresLeases:
    """The `Leases` of a `PostgresStore`, on its pool; each call is one statement."""

    def __init__(self, connections: Callable[[], asyncpg.Pool]) -> None:
        self._connections = connections

    async def take(
        self, owner: str, stores: Collection[str], limit: int, ttl: timedelta
    ) -> Claimed:
        """Take up to `limit` of `stores` that are free or expired, for `ttl`; say which were
        taken over from another owner's expired lease."""
        if limit <= 0:
            await self._connections().execute(_BEAT, owner, ttl)
            return Claimed([], [])
        rows = await self._connections().fetch(_CLAIM, owner, ttl, sorted(set(stores)), limit)
        return Claimed(sorted(r[0] for r in rows), sorted(r[0] for r in rows if r[1]))

    async def renew(self, owner: str, ttl: timedelta) -> list[str]:
        """Extend `owner`'s unexpired leases to `ttl` from now; return the stores it holds."""
        rows = await self._connections().fetch(_RENEW, owner, ttl)
        return sorted(r[0] for r in rows)

    async def release(self, owner: str, stores: Collection[str] | None = None) -> None:
        """Free `owner`'s leases of `stores` (None: all, and `owner` leaves)."""
        if stores is None:
            await self._connections().execute(_RELEASE_ALL, owner)
        else:
            await self._connections().execute(_RELEASE_SOME, owner, sorted(set(stores)))

    async def owners(self) -> list[str]:
        """The live owners, by id."""
        rows = await self._connections().fetch(_OWNERS)
        return [r[0] for r in rows]

    async def holders(self, stores: Collection[str]) -> list[Holder]:
        """The unexpired leases of `stores`, by store (one index probe per store named)."""
        rows = await self._connections().fetch(_HOLDERS, sorted(set(stores)))
        return [Holder(r[0], r[1], r[2]) for r in rows]
