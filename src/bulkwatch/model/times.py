"""The one wall clock, and the one rule for datetimes without an offset (`common.times`)."""

from __future__ import annotations

from datetime import UTC, datetime

from bulkwatch.common.times import as_utc

__all__ = ["as_utc", "utcnow"]


def utcnow() -> datetime:
    """Now, in UTC: the default clock of every part that takes one."""
    return datetime.now(UTC)
