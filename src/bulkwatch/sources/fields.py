"""Reading the loosely typed values of a platform's JSON body.

Neither platform publishes a schema, so each reader accepts every plausible spelling of a value
and, when it cannot, records a short problem and returns None instead of failing the poll.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from bulkwatch.model import as_utc

__all__ = ["as_id", "as_int", "read_datetime", "read_int", "read_text", "short", "type_name"]

_INTEGER = re.compile(r"^\s*[+-]?\d{1,18}\s*$")
# Epoch numbers above this are milliseconds (it is 5138 AD in seconds).
_MILLIS_FROM = 1e11


def type_name(value: Any) -> str:
    """How to name a JSON value's type in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def short(value: Any, limit: int = 40) -> str:
    """A value as it may appear in a problem: repr, one line, bounded."""
    text = repr(value) if isinstance(value, str) else _compact(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compact(value: Any) -> str:
    if isinstance(value, list | dict):
        return type_name(value)  # a whole structure says nothing useful in one line
    return repr(value)


def as_int(value: Any) -> int | None:
    """An integer, an integer-like string, or an integral float; else None (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    return None


def as_id(value: Any) -> str | None:
    """A task id: a non-empty string, or an integer written as a string."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def read_int(value: Any, label: str, problems: list[str]) -> int | None:
    """An optional integer field; a present but unreadable value is a problem."""
    if value is None or value == "":
        return None
    number = as_int(value)
    if number is None:
        problems.append(f"{label}: {short(value)} is not an integer")
    return number


def read_text(value: Any, label: str, problems: list[str]) -> str | None:
    """An optional string field; "" is None, other types are a problem."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    problems.append(f"{label}: expected a string, got {type_name(value)}")
    return None


def read_datetime(value: Any, label: str, problems: list[str]) -> datetime | None:
    """An optional ISO 8601 time (or epoch seconds/milliseconds), always timezone-aware.

    A time without offset is read as UTC and noted: it is a guess, and a wrong guess shifts
    stall and expiry warnings by hours.
    """
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > _MILLIS_FROM else value
        if math.isfinite(seconds):
            try:
                return datetime.fromtimestamp(seconds, UTC)
            except (OverflowError, OSError, ValueError):
                pass  # out of range for a datetime: reported below like any unreadable time
        problems.append(f"{label}: cannot read {short(value)} as a time")
        return None
    if not isinstance(value, str):
        problems.append(f"{label}: expected an ISO 8601 time, got {type_name(value)}")
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        problems.append(f"{label}: cannot read {short(value)} as an ISO 8601 time")
        return None
    if parsed.tzinfo is None:
        problems.append(f"{label}: {short(value)} has no UTC offset; read as UTC")
    return as_utc(parsed)
