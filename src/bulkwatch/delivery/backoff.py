"""The delivery retry delay: exponential, with equal jitter, `Retry-After` as a lower bound."""

from __future__ import annotations

import random

from bulkwatch.common.backoff import equal_jitter
from bulkwatch.config import RetrySettings

__all__ = ["backoff_delay"]


def backoff_delay(
    retry: RetrySettings,
    attempts: int,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before the next attempt, after `attempts` failed ones (>= 1)."""
    delay = equal_jitter(retry.initial, retry.max_delay, attempts, rng)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry.max_delay))
    return delay
