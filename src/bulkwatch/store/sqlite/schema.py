"""The SQLite schema as the store uses it: `migrate` brings a file to the current version (the
steps are in `migrations`); how rows map to objects and back is in `rows`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from bulkwatch.store.base import SchemaTooNewError
from bulkwatch.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION

# The row mapping lives in `rows`; its names stay importable from here.
from bulkwatch.store.sqlite.rows import (
    DELIVERY_COLUMNS,
    delivery_from_row,
    dt,
    dt_required,
    ts,
    ts_or_none,
)

__all__ = [
    "DELIVERY_COLUMNS",
    "SchemaTooNewError",
    "delivery_from_row",
    "dt",
    "dt_required",
    "migrate",
    "ts",
    "ts_or_none",
]


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: commit on success, roll back on any exception and re-raise it.

    IMMEDIATE takes the write lock before the first read, so nothing read inside can change
    under us (another process on the file) before we write. `conn` must be in autocommit mode
    (`isolation_level=None`).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_version(found: int) -> None:
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the state database has schema version {found}, but this bulkwatch only "
            f"knows versions up to {SCHEMA_VERSION}; upgrade bulkwatch"
        )


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to `SCHEMA_VERSION` in one transaction; return the version found.

    The version is read inside the write transaction, so two processes starting together on
    a fresh file cannot both create the tables.
    """
    with _immediate(conn):
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        _check_version(found)
        for step in MIGRATIONS[found:]:
            step(conn)
        if found != SCHEMA_VERSION:
            # user_version lives in the database header, so it commits with the tables.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    return int(found)
