"""The delivery retry delay: exponential, with equal jitter, `Retry-After` as a lower bound."""

from __future__ import annotations

import random

from bulkwatch.config import RetrySettings

__all__ = ["backoff_delay"]

# 2**60 times any sane initial delay is far past max_delay; the cap avoids float overflow.
_MAX_EXPONENT = 60


def backoff_delay(
    retry: RetrySettings,
    attempts: int,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before the next attempt, after `attempts` failed ones (>= 1)."""
    ceiling = min(retry.max_delay, retry.initial * 2.0 ** min(max(attempts - 1, 0), _MAX_EXPONENT))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry.max_delay))
    return delay
