"""Endpoint notes: what the daemon learnt of each endpoint that an operator should see in
`bulkwatch status` (a list longer than a poll reads, an endpoint that never showed a task).

One row per (store, platform, endpoint, name) in `endpoint_notes` (schema v4); written with the
poll that learnt it, in the same transaction, and only when it changed. An empty value removes
the note.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from bulkwatch.model import EndpointKey

__all__ = ["list_notes", "save_notes"]

_UPSERT = (
    "INSERT INTO endpoint_notes (store, platform, endpoint, name, value) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (store, platform, endpoint, name) DO UPDATE SET value = excluded.value"
)
_DELETE = (
    "DELETE FROM endpoint_notes WHERE store = ? AND platform = ? AND endpoint = ? AND name = ?"
)


def save_notes(
    conn: sqlite3.Connection, key: EndpointKey, notes: Iterable[tuple[str, str]]
) -> None:
    """Set (or, with an empty value, remove) notes of one endpoint."""
    where = (key.store, key.platform.value, key.endpoint)
    for name, value in notes:
        if value:
            conn.execute(_UPSERT, (*where, name, value))
        else:
            conn.execute(_DELETE, (*where, name))


def list_notes(conn: sqlite3.Connection, store: str | None) -> list[tuple[str, str, str, str]]:
    """(store, endpoint, name, value) of every note, or of one store's."""
    rows = conn.execute(
        "SELECT store, endpoint, name, value FROM endpoint_notes "
        "WHERE (:store IS NULL OR store = :store) ORDER BY store, endpoint, name",
        {"store": store},
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]
