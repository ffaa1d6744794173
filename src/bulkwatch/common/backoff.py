"""Exponential backoff with "equal jitter", for failed deliveries and failed polls alike."""

from __future__ import annotations

import random

__all__ = ["equal_jitter"]

# 2**60 times any sane initial wait is far past any cap; the bound keeps the float finite.
_MAX_EXPONENT = 60


def equal_jitter(initial: float, cap: float, failures: int, rng: random.Random) -> float:
    """Seconds to wait after the `failures`-th failure in a row: uniform in [d/2, d] with
    d = min(cap, initial * 2**(failures - 1)).

    Half the wait stays fixed, so whatever failed gets real breathing room; the random half
    spreads out the retries of many that failed together.
    """
    ceiling = min(cap, initial * 2.0 ** min(max(failures - 1, 0), _MAX_EXPONENT))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
