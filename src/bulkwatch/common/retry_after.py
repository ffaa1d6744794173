"""`Retry-After` (RFC 9110, section 10.2.3): how long to wait, from a platform or a webhook."""

from __future__ import annotations

import math
import re
from datetime import datetime
from email.utils import parsedate_to_datetime

from bulkwatch.common.times import as_utc

__all__ = ["parse_retry_after"]

_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP-date); None if unreadable.
    A date in the past means 0."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.match(value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (as_utc(when) - as_utc(now)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
