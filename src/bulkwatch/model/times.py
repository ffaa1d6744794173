"""The one wall clock and the one rule for datetimes without an offset."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_utc", "utcnow"]


def utcnow() -> datetime:
    """Now, in UTC: the default clock of every part that takes one."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` with an offset: a naive datetime is read as UTC (what SQLite rows and
    platforms without an offset give)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
