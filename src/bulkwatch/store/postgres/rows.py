"""How the PostgreSQL store's rows map to bulkwatch's objects, and back (`ROWS`).

Datetimes are `timestamptz`: stored to the microsecond, read back as aware UTC datetimes.
A naive datetime is UTC throughout bulkwatch; the driver would take it for local time, so
every one is made aware before it is sent. A set of endpoint names is a `text[]`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bulkwatch.store.rows import DELIVERY_COLUMNS, NO_ENDPOINTS, RowCodec

# DELIVERY_COLUMNS and delivery_from_row stay importable from here for the outbox.
__all__ = ["DELIVERY_COLUMNS", "ROWS", "delivery_from_row", "utc", "utc_or_none"]


def utc(value: datetime) -> datetime:
    """`value` made aware: a naive datetime is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def utc_or_none(value: datetime | None) -> datetime | None:
    """`utc`, passing None through."""
    return None if value is None else utc(value)


def _as_read(value: Any) -> datetime:
    """The driver reads a `timestamptz` as an aware datetime already."""
    return value  # type: ignore[no-any-return]


def _names(names: frozenset[str]) -> list[str]:
    return sorted(names)


def _read_names(value: list[str] | None) -> frozenset[str]:
    return frozenset(value) if value else NO_ENDPOINTS


ROWS = RowCodec(time=utc, read_time=_as_read, names=_names, read_names=_read_names)
delivery_from_row = ROWS.delivery_from_row
