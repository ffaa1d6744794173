"""The PostgreSQL schema: tables, and migrations applied at start under an advisory lock.

The tables live in the connection's current schema (the first of `search_path` that exists:
`public`, or the one a `?search_path=` in the URL names), so several bulkwatch deployments
can share a database in separate schemas. Key and name columns use the "C" collation: they
sort byte by byte, as in the SQLite store, whatever the database's locale.

Migrations run in one transaction that first takes a transaction-level advisory lock, keyed
by the schema: replicas that start together wait for the first to finish, then find the
schema current. DDL is transactional in PostgreSQL, so a migration that fails leaves nothing
half-built, and the lock goes with the transaction whatever happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bulkwatch.store.base import SchemaTooNewError, StoreUnavailableError
from bulkwatch.store.postgres.claims import MIGRATION as _V6  # a shared outbox (replicas)
from bulkwatch.store.postgres.leases import MIGRATION as _V5  # store leases (replicas)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "NoSchemaError", "migrate", "schema_version"]

_V1 = (
    """
    CREATE TABLE tasks (
        store text COLLATE "C" NOT NULL,
        platform text COLLATE "C" NOT NULL,
        task_id text COLLATE "C" NOT NULL,
        operation_type text NOT NULL,
        status text NOT NULL,
        raw_status text NOT NULL,  -- JSON, so an int stays an int and a str a str
        observed_at timestamptz NOT NULL,
        url text,
        partial_data_url text,
        error_code text,
        reason text,
        completed_count bigint,
        created_at timestamptz,
        completed_at timestamptz,
        expires_at timestamptz,
        endpoint text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        first_seen_at timestamptz NOT NULL,
        changed_at timestamptz NOT NULL,
        silent_baseline boolean NOT NULL,
        stalled_notified boolean NOT NULL,
        expiring_notified boolean NOT NULL,
        gone boolean NOT NULL,
        PRIMARY KEY (store, platform, task_id)
    )
    """,
    """
    CREATE TABLE endpoints (
        store text COLLATE "C" NOT NULL,
        platform text COLLATE "C" NOT NULL,
        endpoint text COLLATE "C" NOT NULL,
        baselined boolean NOT NULL,
        consecutive_failures integer NOT NULL,
        current_task_id text,
        last_success_at timestamptz,
        last_failure text,
        PRIMARY KEY (store, platform, endpoint)
    )
    """,
    """
    CREATE TABLE store_health (
        store text COLLATE "C" NOT NULL,
        platform text COLLATE "C" NOT NULL,
        down boolean NOT NULL,
        outage integer NOT NULL,
        failing_endpoints text[] NOT NULL,  -- sorted
        PRIMARY KEY (store, platform)
    )
    """,
    # An identity column never hands out an id twice, even after prune deletes the newest
    # rows: ids are shown by `deliveries list` and passed back to `deliveries retry`.
    """
    CREATE TABLE outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id text COLLATE "C" NOT NULL,
        notifier text COLLATE "C" NOT NULL,
        event_type text NOT NULL,
        store text COLLATE "C" NOT NULL,
        body bytea NOT NULL,
        status text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts integer NOT NULL,
        created_at timestamptz NOT NULL,
        next_attempt_at timestamptz NOT NULL,
        last_error text,
        delivered_at timestamptz,
        UNIQUE (event_id, notifier)
    )
    """,
    # The dispatcher's hot query reads only pending rows: a partial index stays as small as
    # the backlog, however many delivered rows `state.retention` keeps.
    "CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending'",
    "CREATE INDEX outbox_dead ON outbox (id) WHERE status = 'dead'",
    # The outbox gauges need rows per (notifier, status); counting the outbox scans every
    # delivered row. Triggers append each statement's net change to `outbox_count_changes`
    # (appending never waits for another transaction, unlike updating one counter row that
    # every poll touches); `outbox_counts()` folds the changes into `outbox_counts` now and
    # then, and reads the sum of both.
    """
    CREATE TABLE outbox_counts (
        notifier text COLLATE "C" NOT NULL,
        status text COLLATE "C" NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (notifier, status)
    )
    """,
    """
    CREATE TABLE outbox_count_changes (
        notifier text COLLATE "C" NOT NULL,
        status text COLLATE "C" NOT NULL,
        n bigint NOT NULL
    )
    """,
    """
    CREATE FUNCTION outbox_count_change() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO outbox_count_changes (notifier, status, n)
            SELECT notifier, status, count(*) FROM new_rows GROUP BY notifier, status;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO outbox_count_changes (notifier, status, n)
            SELECT notifier, status, -count(*) FROM old_rows GROUP BY notifier, status;
        ELSE
            INSERT INTO outbox_count_changes (notifier, status, n)
            SELECT notifier, status, sum(n) FROM (
                SELECT notifier, status, -1 AS n FROM old_rows
                UNION ALL
                SELECT notifier, status, 1 AS n FROM new_rows
            ) AS moved
            GROUP BY notifier, status HAVING sum(n) <> 0;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER outbox_counted_insert AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_change()
    """,
    """
    CREATE TRIGGER outbox_counted_delete AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_change()
    """,
    """
    CREATE TRIGGER outbox_counted_update AFTER UPDATE ON outbox
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_change()
    """,
)

# The status page and the API read a page of rows at a time, newest first; each of their reads
# stays a bounded index walk at any number of tasks: one index per way in (all tasks, one
# store's, one status's), each ending in the whole sort key so a page continues where the
# last one ended (walked backwards for newest first); the few troubled stores in a partial
# index of their own. And endpoint notes: what the daemon learnt of an endpoint that an
# operator should see in `bulkwatch status`.
_V2 = (
    "CREATE INDEX tasks_recent ON tasks (first_seen_at, store, platform, task_id)",
    "CREATE INDEX tasks_recent_by_store ON tasks (store, first_seen_at, platform, task_id)",
    "CREATE INDEX tasks_recent_by_status "
    "ON tasks (status, first_seen_at, store, platform, task_id)",
    "CREATE INDEX store_health_troubled ON store_health (store, platform) "
    "WHERE down OR failing_endpoints <> '{}'",
    """
    CREATE TABLE endpoint_notes (
        store text COLLATE "C" NOT NULL,
        platform text COLLATE "C" NOT NULL,
        endpoint text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        value text NOT NULL,
        PRIMARY KEY (store, platform, endpoint, name)
    )
    """,
)

# Refreshed access tokens (Shopline apps with credentials), one row per store: a restart goes
# on with the current token instead of the configured one, which the platform has retired.
_V3 = (
    """
    CREATE TABLE access_tokens (
        store text COLLATE "C" NOT NULL PRIMARY KEY,
        token text NOT NULL,
        expires_at timestamptz,
        seed text NOT NULL,
        refreshed_at timestamptz NOT NULL
    )
    """,
)

# Ordered delivery: a notifier gets the events of one subject (a task, or a store's up and down)
# in the order they were written. Each row names its event's CloudEvents subject; a pending row
# is held while an older pending row of the same notifier and subject exists, which the
# partial index answers with one probe. Rows written before this version get the subject from
# their body unless delivered (a dead row may be requeued); a body that is not a JSON object
# gets none (never held).
_V4 = (
    'ALTER TABLE outbox ADD COLUMN subject text COLLATE "C"',
    """
    CREATE FUNCTION pg_temp.bulkwatch_subject(body bytea) RETURNS text LANGUAGE plpgsql
    AS $$
    DECLARE
        parsed jsonb;
    BEGIN
        parsed := convert_from(body, 'UTF8')::jsonb;
        IF jsonb_typeof(parsed) = 'object' AND jsonb_typeof(parsed -> 'subject') = 'string'
        THEN
            RETURN parsed ->> 'subject';
        END IF;
        RETURN NULL;
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END
    $$
    """,
    "UPDATE outbox SET subject = pg_temp.bulkwatch_subject(body) WHERE status <> 'delivered'",
    "DROP FUNCTION pg_temp.bulkwatch_subject(bytea)",
    "CREATE INDEX outbox_pending_subject ON outbox (notifier, subject, id) "
    "WHERE status = 'pending'",
)

# MIGRATIONS[n] takes a schema from version n to n + 1. Append; never edit a released one.
MIGRATIONS: tuple[Sequence[str], ...] = (_V1, _V2, _V3, _V4, _V5, _V6)
SCHEMA_VERSION = len(MIGRATIONS)

# One row: the schema's version. Created before anything else, outside the numbered steps.
_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS bulkwatch_schema (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        version integer NOT NULL
    )
"""
# Two-key advisory lock: a constant for bulkwatch's schema lock, and the schema's name, so
# deployments in separate schemas of one database do not wait for each other.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('bulkwatch.schema'), hashtext($1))"


# A connection of its own, or one borrowed from a pool.
Connection = asyncpg.Connection | PoolConnectionProxy


class NoSchemaError(StoreUnavailableError):
    """The connection's search_path names no schema that exists, so there is nowhere to
    create the tables."""


async def schema_version(conn: Connection, schema: str) -> int:
    """The version `schema` is at; 0 when bulkwatch never migrated it."""
    exists = await conn.fetchval(
        "SELECT to_regclass(quote_ident($1) || '.bulkwatch_schema') IS NOT NULL", schema
    )
    if not exists:
        return 0
    found = await conn.fetchval("SELECT version FROM bulkwatch_schema")
    return 0 if found is None else int(found)


async def migrate(conn: Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> int:
    """Bring the current schema up to `len(migrations)` in one transaction, under the schema's
    advisory lock; return the version found. Raise `SchemaTooNewError` when the schema is
    newer than `migrations` know."""
    schema = await conn.fetchval("SELECT current_schema()")
    if schema is None:
        path = await conn.fetchval("SHOW search_path")
        raise NoSchemaError(
            f"none of the schemas in the PostgreSQL search_path ({path}) exists; "
            "create it first (CREATE SCHEMA ...) or name another with ?search_path="
        )
    async with conn.transaction():
        await conn.execute(_LOCK, schema)
        # Read under the lock: a replica that migrated while we waited is seen here.
        found = await schema_version(conn, schema)
        known = len(migrations)
        if found > known:
            raise SchemaTooNewError(
                f"the PostgreSQL state schema {schema!r} has version {found}, but this "
                f"bulkwatch only knows versions up to {known}; upgrade bulkwatch"
            )
        if found == known:
            return found
        await conn.execute(_VERSION_TABLE)
        for step in migrations[found:]:
            for statement in step:
                await conn.execute(statement)
        await conn.execute(
            "INSERT INTO bulkwatch_schema (version) VALUES ($1) "
            "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            known,
        )
    return found
