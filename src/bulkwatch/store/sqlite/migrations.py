"""The SQLite schema's history: each migration takes a database from one `user_version` to the
next. Append a migration for every change; never edit a released one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration"]

Migration = Callable[[sqlite3.Connection], None]

_V1 = (
    """
    CREATE TABLE tasks (
        store TEXT NOT NULL,
        platform TEXT NOT NULL,
        task_id TEXT NOT NULL,
        operation_type TEXT NOT NULL,
        status TEXT NOT NULL,
        raw_status TEXT NOT NULL,  -- JSON, so an int stays an int and a str a str
        observed_at TEXT NOT NULL,
        url TEXT,
        partial_data_url TEXT,
        error_code TEXT,
        reason TEXT,
        completed_count INTEGER,
        created_at TEXT,
        completed_at TEXT,
        expires_at TEXT,
        endpoint TEXT NOT NULL,
        seq INTEGER NOT NULL,
        first_seen_at TEXT NOT NULL,
        changed_at TEXT NOT NULL,
        silent_baseline INTEGER NOT NULL,
        stalled_notified INTEGER NOT NULL,
        expiring_notified INTEGER NOT NULL,
        gone INTEGER NOT NULL,
        PRIMARY KEY (store, platform, task_id)
    )
    """,
    # Every poll loads one endpoint's tasks.
    "CREATE INDEX tasks_by_endpoint ON tasks (store, platform, endpoint)",
    """
    CREATE TABLE endpoints (
        store TEXT NOT NULL,
        platform TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        baselined INTEGER NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        current_task_id TEXT,
        last_success_at TEXT,
        last_failure TEXT,
        PRIMARY KEY (store, platform, endpoint)
    )
    """,
    """
    CREATE TABLE store_health (
        store TEXT NOT NULL,
        platform TEXT NOT NULL,
        down INTEGER NOT NULL,
        outage INTEGER NOT NULL,
        failing_endpoints TEXT NOT NULL,  -- JSON array, sorted
        PRIMARY KEY (store, platform)
    )
    """,
    # AUTOINCREMENT: ids are shown by `deliveries list` and passed back to `deliveries retry`,
    # so an id must never be reused after prune deletes the newest rows.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        notifier TEXT NOT NULL,
        event_type TEXT NOT NULL,
        store TEXT NOT NULL,
        body BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        delivered_at TEXT,
        UNIQUE (event_id, notifier)
    )
    """,
    # The dispatcher's hot query; rowid (= id) is the implicit last column, so
    # ORDER BY next_attempt_at, id is served by this index too.
    "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
)

# The outbox gauges need rows per (notifier, status). Counting them scans the whole outbox,
# delivered rows and their bodies included (kept for `state.retention`, millions at scale),
# and the dispatcher asks after every batch: 7 ms at 10,000 rows, blocking the event loop,
# and growing with the table. Triggers keep the counts in the same transaction as the rows,
# so reading them costs a handful of rows whatever the outbox holds.
_V2 = (
    """
    CREATE TABLE outbox_counts (
        notifier TEXT NOT NULL,
        status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (notifier, status)
    ) WITHOUT ROWID
    """,
    """
    INSERT INTO outbox_counts (notifier, status, n)
    SELECT notifier, status, count(*) FROM outbox GROUP BY notifier, status
    """,
    """
    CREATE TRIGGER outbox_counts_insert AFTER INSERT ON outbox BEGIN
        INSERT INTO outbox_counts (notifier, status, n) VALUES (new.notifier, new.status, 1)
        ON CONFLICT (notifier, status) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER outbox_counts_delete AFTER DELETE ON outbox BEGIN
        UPDATE outbox_counts SET n = n - 1 WHERE notifier = old.notifier AND status = old.status;
    END
    """,
    """
    CREATE TRIGGER outbox_counts_update AFTER UPDATE OF notifier, status ON outbox
    WHEN old.notifier IS NOT new.notifier OR old.status IS NOT new.status BEGIN
        UPDATE outbox_counts SET n = n - 1 WHERE notifier = old.notifier AND status = old.status;
        INSERT INTO outbox_counts (notifier, status, n) VALUES (new.notifier, new.status, 1)
        ON CONFLICT (notifier, status) DO UPDATE SET n = n + 1;
    END
    """,
)


# The status page and the API read a page of rows at a time, newest first, and each of their
# reads must stay a bounded index walk at any number of tasks: one index per way in (all
# tasks, one store's, one status's), each ending in the whole sort key so a page continues
# where the last one ended; and the few troubled stores in a partial index of their own.
_V3 = (
    "CREATE INDEX tasks_recent ON tasks (first_seen_at, store, platform, task_id)",
    "CREATE INDEX tasks_recent_by_store ON tasks (store, first_seen_at, platform, task_id)",
    "CREATE INDEX tasks_recent_by_status "
    "ON tasks (status, first_seen_at, store, platform, task_id)",
    "CREATE INDEX store_health_troubled ON store_health (store) "
    "WHERE down OR failing_endpoints != '[]'",
)

# Endpoint notes: what the daemon learnt of an endpoint that an operator should see in
# `bulkwatch status` (a list longer than a poll reads, an endpoint that never showed a task).
_V4 = (
    """
    CREATE TABLE endpoint_notes (
        store TEXT NOT NULL,
        platform TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (store, platform, endpoint, name)
    ) WITHOUT ROWID
    """,
)

# Refreshed access tokens (Shopline apps with credentials), one row per store: a restart goes
# on with the current token instead of the configured one, which the platform has retired.
_V5 = (
    """
    CREATE TABLE access_tokens (
        store TEXT NOT NULL PRIMARY KEY,
        token TEXT NOT NULL,
        expires_at TEXT,
        seed TEXT NOT NULL,
        refreshed_at TEXT NOT NULL
    ) WITHOUT ROWID
    """,
)


# Ordered delivery: a notifier gets the events of one subject (a task, or a store's up and down)
# in the order they were written. Each row names its event's CloudEvents subject; a pending row
# is held while an older pending row of the same notifier and subject exists, which the
# partial index answers with one probe. Rows written before this version get the subject from
# their body unless delivered (a dead row may be requeued).
_V6 = (
    "ALTER TABLE outbox ADD COLUMN subject TEXT",
    """
    UPDATE outbox SET subject = CASE WHEN json_valid(CAST(body AS TEXT))
        THEN json_extract(CAST(body AS TEXT), '$.subject') END
    WHERE status != 'delivered'
    """,
    "CREATE INDEX outbox_pending_subject ON outbox (notifier, subject, id) "
    "WHERE status = 'pending'",
)


def _execute(statements: Sequence[str]) -> Migration:
    """The migration that runs `statements` in order."""

    def migration(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return migration


# MIGRATIONS[n] takes a database from user_version n to n + 1.
MIGRATIONS: tuple[Migration, ...] = (
    _execute(_V1),
    _execute(_V2),
    _execute(_V3),
    _execute(_V4),
    _execute(_V5),
    _execute(_V6),
)
SCHEMA_VERSION = len(MIGRATIONS)
