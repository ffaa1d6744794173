"""What every request bulkwatch makes to a platform shares: the process's session, a slot
from the store's rate limit, a deadline, and the `PollError` when the deadline or the
connection fails (`RequestBudget`)."""

from __future__ import annotations

import aiohttp

from bulkwatch.model import EndpointKey, FailureKind, PollError
from bulkwatch.sources.http.failures import one_line
from bulkwatch.sources.http.ratelimit import RateLimiter

__all__ = ["RequestBudget"]


class RequestBudget:
    """Requests through `session` that each take a slot from `limiter` (the wait for it is
    not part of the deadline) and get `seconds` for the whole response."""

    def __init__(
        self, session: aiohttp.ClientSession, seconds: float, limiter: RateLimiter | None
    ) -> None:
        self.session = session
        self.seconds = seconds
        self.timeout = aiohttp.ClientTimeout(total=seconds)
        self._limiter = limiter

    async def slot(self) -> None:
        """Wait for the store's rate limit to allow one more request."""
        if self._limiter is not None:
            await self._limiter.acquire()

    def timed_out(self, what: str, key: EndpointKey, request_id: str | None) -> PollError:
        """A TIMEOUT: `what` ("no complete response") did not come within the deadline."""
        message = f"{what} within {self.seconds:g} s"
        return PollError(FailureKind.TIMEOUT, message, key=key, request_id=request_id)

    @staticmethod
    def unreachable(
        exc: BaseException, key: EndpointKey, *, doing: str = "", request_id: str | None = None
    ) -> PollError:
        """A NETWORK failure: the connection failed (`doing` prefixes the message)."""
        detail = one_line(str(exc) or type(exc).__name__)
        message = f"{doing}connection failed: {detail}"
        return PollError(FailureKind.NETWORK, message, key=key, request_id=request_id)
