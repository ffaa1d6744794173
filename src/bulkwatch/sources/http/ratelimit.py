"""Per-store request rate limits: a token bucket that costs one float per store.

The platforms limit each app per store (Shoplazza about 2 requests/s, Shopline about 4, each
with a bucket of about 40) and answer 429 beyond it. bulkwatch stays under the limit rather
than bouncing off it: every request to a store, whichever endpoint or page it is for, first
takes a slot from that store's bucket.

The bucket is kept as a "theoretical arrival time" (the GCRA form of a token bucket): no task,
no timer and no lock per store, so 10,000 idle stores cost 10,000 floats. A caller reserves
the next free slot and sleeps until it; callers that arrive together get successive slots and
are served in arrival order.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most `burst` requests at once, then `rate` requests per second, for one store.

    `clock` (monotonic seconds) and `sleep` are injectable so tests need no real waiting.
    """

    __slots__ = ("_clock", "_interval", "_sleep", "_tat", "_tolerance", "burst", "rate")

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("rate must be a positive number of requests per second")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        # A full bucket lets `burst` requests through at once: the slot of the last of them
        # lies (burst - 1) intervals ahead of now.
        self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf  # when the bucket would be empty again if nobody else came
        self._clock = clock
        self._sleep = sleep

    def reserve(self) -> float:
        """Take the next free slot; return the seconds to wait before using it (0: now)."""
        now = self._clock()
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        return max(0.0, tat - self._tolerance - now)

    async def acquire(self) -> float:
        """Wait for a slot; return how long that took. Cancelling gives the slot back when
        nobody has reserved one after it."""
        wait = self.reserve()
        if wait <= 0:
            return 0.0
        mine = self._tat
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:
            if self._tat == mine:
                self._tat -= self._interval
            raise
        return wait

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}/s, burst={self.burst})"
