"""Claims on outbox rows (schema v6): the PostgreSQL outbox is shared by every replica.

Handing out a row claims it: `claimed_by` names the outbox that took it (a replica's id, or a
token of its own) and `claimed_until` says how long no other replica may take it. Handing out
is one statement, `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`: replicas that
ask at the same moment skip the rows another is taking instead of waiting for them, and a row
another took since our snapshot is checked again against its newest version, so no row is
handed to two replicas while its claim holds. A replica that dies with rows in flight leaves
them claimed; once `claimed_until` passes, another replica takes them, under the same event id
(at least once). Claim times are the database's `now()`, never a replica's clock.

An outcome is recorded only by the replica that last took the row (or for a row nobody took):
a replica whose claim expired and whose row went to another meanwhile loses its outcome, and
the other replica's stands. Recording clears `claimed_until` and keeps `claimed_by`, so the
last taker stays known, and a late outcome from an earlier one can still be told apart.

The order of a subject is kept across replicas: a pending row holds the later rows of its
notifier and subject whether it is claimed or not.
"""

from __future__ import annotations

from bulkwatch.store.rows import DELIVERY_COLUMNS

__all__ = ["DUE", "MARK", "MIGRATION", "NEXT_DUE", "RELEASE", "RELEASE_ALL", "REQUEUE"]

# Schema v6. Claimed rows are the few in flight: a partial index on the claim keeps finding
# the next expiry one short walk however long the backlog (see NEXT_DUE).
MIGRATION = (
    'ALTER TABLE outbox ADD COLUMN claimed_by text COLLATE "C"',
    "ALTER TABLE outbox ADD COLUMN claimed_until timestamptz",
    "CREATE INDEX outbox_claimed ON outbox (claimed_until) WHERE claimed_until IS NOT NULL",
)

# A pending row waits while an older pending row of its notifier and subject exists (ordered
# delivery), claimed or not; a row without a subject never waits. One probe of
# `outbox_pending_subject` each.
_NOT_HELD = (
    "NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.status = 'pending' "
    "AND earlier.notifier = outbox.notifier AND earlier.subject = outbox.subject "
    "AND earlier.id < outbox.id)"
)
_FREE = "(outbox.claimed_until IS NULL OR outbox.claimed_until <= now())"

# $1 due by (the dispatcher's clock), $2 at most, $3 the claimer, $4 claim seconds. The rows
# come back in no particular order: the caller sorts them.
DUE = f"""
    UPDATE outbox SET claimed_by = $3, claimed_until = now() + make_interval(secs => $4)
    WHERE id IN (
        SELECT id FROM outbox
        WHERE status = 'pending' AND next_attempt_at <= $1 AND {_FREE} AND {_NOT_HELD}
        ORDER BY next_attempt_at, id LIMIT $2
        FOR UPDATE OF outbox SKIP LOCKED
    )
    RETURNING {DELIVERY_COLUMNS}
"""  # noqa: S608 - constant column list

# The earlier of: the first free row (walking `outbox_due` in order), and the first moment a
# claimed row becomes free and due (walking `outbox_claimed`, as short as the rows in
# flight). A claim of this outbox counts as any other: its rows are not handed out again
# while it holds.
NEXT_DUE = f"""
    SELECT least(
        (SELECT next_attempt_at FROM outbox
         WHERE status = 'pending' AND {_FREE} AND {_NOT_HELD}
         ORDER BY next_attempt_at, id LIMIT 1),
        (SELECT min(greatest(next_attempt_at, claimed_until)) FROM outbox
         WHERE claimed_until > now() AND status = 'pending' AND {_NOT_HELD})
    )
"""  # noqa: S608 - constant SQL

# The outcomes marked since the last commit, in one statement: a NULL keeps the stored value
# (a delivered row keeps its attempts and last error, a dead one its next attempt time).
# $7: the outbox marking; a row another outbox took since is left alone (its id is not
# returned).
MARK = """
    UPDATE outbox AS o SET status = m.status,
        attempts = coalesce(m.attempts, o.attempts),
        next_attempt_at = coalesce(m.next_attempt_at, o.next_attempt_at),
        last_error = coalesce(m.last_error, o.last_error),
        delivered_at = coalesce(m.delivered_at, o.delivered_at),
        claimed_until = NULL
    FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::timestamptz[], $5::text[],
        $6::timestamptz[]) AS m(id, status, attempts, next_attempt_at, last_error, delivered_at)
    WHERE o.id = m.id AND (o.claimed_by = $7 OR o.claimed_by IS NULL)
    RETURNING o.id
"""

# Rows handed out but never attempted (a drain, a store error) are free again at once.
RELEASE = (
    "UPDATE outbox SET claimed_until = NULL "
    "WHERE id = ANY($1::bigint[]) AND claimed_by = $2 AND claimed_until IS NOT NULL"
)

# Every claim of one outbox, at its close: a process that stops leaves no row to wait for.
RELEASE_ALL = (
    "UPDATE outbox SET claimed_until = NULL WHERE claimed_by = $1 AND claimed_until IS NOT NULL"
)

REQUEUE = (
    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, "
    "claimed_until = NULL "
    "WHERE status = 'dead' AND ($2::text IS NULL OR notifier = $2) "
    "AND ($3::bigint[] IS NULL OR id = ANY($3))"
)
