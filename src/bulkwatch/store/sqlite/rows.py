"""How the SQLite store's rows map to bulkwatch's objects, and back (`ROWS`).

Datetimes are stored as fixed-width UTC ISO strings (`2026-11-23T10:00:00.000000+00:00`): they
round-trip to the microsecond, sort and compare correctly as text, and stay readable in the
`sqlite3` shell when an operator inspects the outbox. A set of endpoint names is a JSON list.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bulkwatch.model import as_utc
from bulkwatch.store.rows import DELIVERY_COLUMNS, NO_ENDPOINTS, RowCodec

# DELIVERY_COLUMNS and delivery_from_row stay importable from here for the outbox.
__all__ = [
    "DELIVERY_COLUMNS",
    "ROWS",
    "delivery_from_row",
    "dt",
    "dt_required",
    "ts",
    "ts_or_none",
]


def ts(value: datetime) -> str:
    """The stored form of a datetime: fixed-width UTC ISO 8601, microseconds included."""
    # The fixed-width form is what makes text comparison in SQL agree with time order.
    return as_utc(value).astimezone(UTC).isoformat(timespec="microseconds")


def ts_or_none(value: datetime | None) -> str | None:
    """`ts`, passing None through."""
    return None if value is None else ts(value)


def dt(value: str | None) -> datetime | None:
    """A stored datetime read back as an aware UTC datetime; None passes through."""
    return None if value is None else datetime.fromisoformat(value)


def dt_required(value: str) -> datetime:
    """A stored, non-null datetime read back as an aware UTC datetime."""
    return datetime.fromisoformat(value)


def _names(names: frozenset[str]) -> str:
    return json.dumps(sorted(names)) if names else "[]"


def _read_names(value: str) -> frozenset[str]:
    return NO_ENDPOINTS if value == "[]" else frozenset(json.loads(value))


ROWS = RowCodec(time=ts, read_time=dt_required, names=_names, read_names=_read_names)
delivery_from_row = ROWS.delivery_from_row
