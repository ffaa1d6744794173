"""A poll's read and its write, each one statement: one round trip to the server apiece.

A round trip, not the SQL, is most of what a statement costs bulkwatch: a send and a wait
on the event loop, and the server's work to parse nothing new (statements are prepared once
per connection). So a poll's view (health, endpoint, tasks) is read by one SELECT, and its
write (health, endpoint, tasks, outbox rows) is one INSERT with data-modifying CTEs: a single
statement is a transaction of its own, so it needs no BEGIN and no COMMIT either, and commits
all of it or none of it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from bulkwatch.common.redact import redact_bytes
from bulkwatch.model import StoreHealth, TrackedTask
from bulkwatch.store.base import OutboxRow, PollWrite
from bulkwatch.store.postgres.rows import ROWS, utc
from bulkwatch.store.rows import ENDPOINT_COLUMNS, HEALTH_COLUMNS, TASK_COLUMNS

__all__ = ["SELECT_VIEW", "save_poll_args", "save_poll_statement"]

_ENDPOINT_VALUES = ", ".join(f"e.{c.strip()}" for c in ENDPOINT_COLUMNS.split(","))
# One row whatever is stored: health and endpoint (NULL columns when never written), and
# the endpoint's tasks among $4 plus its current one, as an array of `tasks` rows.
SELECT_VIEW = f"""
    SELECT h.down, h.outage, h.failing_endpoints, h.store IS NOT NULL,
        e.store IS NOT NULL, {_ENDPOINT_VALUES},
        ARRAY(
            SELECT t FROM tasks AS t
            WHERE t.store = $1 AND t.platform = $2 AND t.endpoint = $3
                AND (t.task_id = ANY($4::text[]) OR t.task_id = e.current_task_id)
        )
    FROM (SELECT) AS one
    LEFT JOIN store_health AS h ON h.store = $1 AND h.platform = $2
    LEFT JOIN endpoints AS e ON e.store = $1 AND e.platform = $2 AND e.endpoint = $3
"""  # noqa: S608 - constant column names

_TASK_TYPES = (
    "text, text, text, text, text, text, timestamptz, text, text, text, text, bigint, "
    "timestamptz, timestamptz, timestamptz, text, bigint, timestamptz, timestamptz, boolean, "
    "boolean, boolean, boolean"
)
_OUTBOX_TYPES = ("text", "text", "text", "text", "bytea", "timestamptz", "text")


def _names(columns: str) -> list[str]:
    return [c.strip() for c in columns.split(",")]


def _updates(columns: str, key: str) -> str:
    keys = set(_names(key))
    return ", ".join(f"{c} = excluded.{c}" for c in _names(columns) if c not in keys)


def _marks(first: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(first, first + count))


# A fenced write's lease check: the store's lease row, if `owner` holds it unexpired, read
# FOR SHARE, so that a takeover (which updates the row) waits until this write commits, and a
# takeover committed first is seen (the row is checked again at its newest version).
_FENCE = """fence AS (
            SELECT FROM leases WHERE store = $7 AND owner = ${owner} AND expires_at >= now()
            FOR SHARE
        )"""
_HELD = "EXISTS (SELECT FROM fence)"


@functools.cache
def save_poll_statement(
    *, tasks: bool, outbox: bool, notes: bool = False, fenced: bool = False
) -> str:
    """The one statement writing a poll: $1 says whether to write the health in $2-$6, the
    endpoint is $7-$14 (its key $7-$9), then the task columns as arrays (when `tasks`), the
    outbox columns as arrays (when `outbox`), the note names and values (when `notes`), the
    owner (when `fenced`). Fenced, every part writes only while the owner holds the store's
    lease, and the statement returns whether it did."""
    guard = f" AND {_HELD}" if fenced else ""  # added to a WHERE
    where = f" WHERE {_HELD}" if fenced else ""  # or the whole WHERE
    endpoint = f"SELECT {_marks(7, 8)}{where}" if fenced else f"VALUES ({_marks(7, 8)})"
    parts = [
        f"""health AS (
            INSERT INTO store_health ({HEALTH_COLUMNS})
            SELECT $2::text, $3::text, $4::boolean, $5::integer, $6::text[]
            WHERE $1::boolean{guard}
            ON CONFLICT (store, platform) DO UPDATE SET
            {_updates(HEALTH_COLUMNS, "store, platform")}
        )""",
        f"""endpoint AS (
            INSERT INTO endpoints ({ENDPOINT_COLUMNS}) {endpoint}
            ON CONFLICT (store, platform, endpoint) DO UPDATE SET
            {_updates(ENDPOINT_COLUMNS, "store, platform, endpoint")}
        )""",
    ]
    n = 15
    if tasks:
        types = [t.strip() for t in _TASK_TYPES.split(",")]
        arrays = ", ".join(f"${n + i}::{t}[]" for i, t in enumerate(types))
        n += len(types)
        parts.append(
            f"""task AS (
            INSERT INTO tasks ({TASK_COLUMNS}) SELECT * FROM unnest({arrays}){where}
            ON CONFLICT (store, platform, task_id) DO UPDATE SET
            {_updates(TASK_COLUMNS, "store, platform, task_id")}
        )"""  # noqa: S608 - constant names and placeholders only
        )
    if outbox:
        arrays = ", ".join(f"${n + i}::{t}[]" for i, t in enumerate(_OUTBOX_TYPES))
        # Ids in the order given (ordered delivery goes by id). ON CONFLICT names the one
        # constraint that may be skipped: a row breaking NOT NULL or CHECK fails the whole
        # write rather than lose an event.
        parts.append(
            f"""outbox_rows AS (
            INSERT INTO outbox (event_id, notifier, event_type, store, body, status, attempts,
                created_at, next_attempt_at, subject)
            SELECT r.event_id, r.notifier, r.event_type, r.store, r.body, 'pending', 0,
                r.created_at, r.created_at, r.subject
            FROM unnest({arrays}) WITH ORDINALITY
                AS r(event_id, notifier, event_type, store, body, created_at, subject, n)
{where}
            ORDER BY r.n
            ON CONFLICT (event_id, notifier) DO NOTHING
        )"""  # noqa: S608 - constant names and placeholders only
        )
        n += len(_OUTBOX_TYPES)
    if notes:
        # Names are distinct (`_note_columns`), so the two never touch the same row.
        parts += [
            f"""note_set AS (
            INSERT INTO endpoint_notes (store, platform, endpoint, name, value)
            SELECT $7, $8, $9, n.name, n.value
            FROM unnest(${n}::text[], ${n + 1}::text[]) AS n(name, value)
            WHERE n.value <> ''{guard}
            ON CONFLICT (store, platform, endpoint, name) DO UPDATE SET value = excluded.value
        )""",  # noqa: S608 - constant names and placeholders only
            f"""note_unset AS (
            DELETE FROM endpoint_notes AS d USING unnest(${n}::text[], ${n + 1}::text[])
                AS n(name, value)
            WHERE d.store = $7 AND d.platform = $8 AND d.endpoint = $9
                AND d.name = n.name AND n.value = ''{guard}
        )""",  # noqa: S608 - constant names and placeholders only
        ]
        n += 2
    if fenced:
        parts.insert(0, _FENCE.format(owner=n))
        return "WITH " + ",\n".join(parts) + f"\nSELECT {_HELD}"
    return "WITH " + ",\n".join(parts) + "\nSELECT"


_NO_HEALTH: tuple[Any, ...] = ("", "", False, 0, [])


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the arrays `unnest` turns back into rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _task_rows(upserts: Sequence[TrackedTask]) -> list[tuple[Any, ...]]:
    # Within one statement a row may be upserted once: keep each task's last state, as
    # writing them one after the other would.
    latest = {(t.snapshot.store, t.snapshot.platform, t.task_id): t for t in upserts}
    return [ROWS.task_params(t) for t in latest.values()]


def _outbox_rows(rows: Sequence[OutboxRow]) -> list[tuple[Any, ...]]:
    # The body as stored, and so as every notifier gets it: no configured secret in it.
    return [
        (
            r.event_id,
            r.notifier,
            r.event_type,
            r.store,
            redact_bytes(r.body),
            utc(r.created_at),
            r.subject,
        )
        for r in rows
    ]


def _health(health: StoreHealth | None) -> tuple[Any, ...]:
    return (False, *_NO_HEALTH) if health is None else (True, *ROWS.health_params(health))


def _note_columns(notes: Sequence[tuple[str, str]]) -> list[list[str]]:
    # One value per name, the last given, as setting them one after the other would leave.
    latest = dict(notes)
    return [list(latest), list(latest.values())]


def save_poll_args(write: PollWrite) -> tuple[str, list[Any]]:
    """The statement and the arguments that write `write`."""
    args: list[Any] = [*_health(write.health), *ROWS.endpoint_params(write.endpoint)]
    if write.upserts:
        args += _columns(_task_rows(write.upserts), 23)
    if write.outbox:
        args += _columns(_outbox_rows(write.outbox), len(_OUTBOX_TYPES))
    if write.notes:
        args += _note_columns(write.notes)
    if write.owner is not None:
        args.append(write.owner)
    sql = save_poll_statement(
        tasks=bool(write.upserts),
        outbox=bool(write.outbox),
        notes=bool(write.notes),
        fenced=write.owner is not None,
    )
    return sql, args
