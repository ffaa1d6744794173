"""The one rule for datetimes without an offset: they are UTC."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_utc"]


def as_utc(value: datetime) -> datetime:
    """`value` with an offset: a naive datetime is read as UTC (what SQLite rows, platforms
    and HTTP dates without an offset give)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
