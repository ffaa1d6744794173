"""What both platform sources share: endpoint keys, the token, the rate limiter, the client."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import aiohttp

from bulkwatch.config import ResolvedStore
from bulkwatch.model import EndpointKey, FailureKind, PollError, PollResult, Unchanged
from bulkwatch.sources.http.client import ApiClient
from bulkwatch.sources.http.ratelimit import RateLimiter
from bulkwatch.sources.http.recording import Recording
from bulkwatch.sources.http.tokens import TokenProvider, Tokens

__all__ = ["HttpSource"]


class HttpSource:
    """Base of the platform sources: one store, its endpoints and its HTTP plumbing.

    The rate limiter is shared by every endpoint (and every page) of the store, since the
    platforms count requests per store. A `recording` keeps what the client saw (the probe).
    """

    request_id_header: ClassVar[str]

    def __init__(
        self,
        store: ResolvedStore,
        session: aiohttp.ClientSession,
        recording: Recording | None = None,
    ) -> None:
        self.platform = store.platform
        self.store = store.name
        self.endpoints: tuple[EndpointKey, ...] = tuple(
            EndpointKey(store.name, self.platform, name) for name in store.endpoints
        )
        self._headers_token: str | None = None
        self._headers_cache: dict[str, str] = {}
        self._tokens: Tokens = TokenProvider(store.config.token(), store.config.access_token_file)
        self.limiter = RateLimiter(store.rate_limit, store.burst)
        self._client = ApiClient(
            session,
            timeout=store.timeout,
            max_body_bytes=store.max_body_bytes,
            limiter=self.limiter,
            request_id_header=self.request_id_header,
            recording=recording,
        )

    async def poll_since(
        self, key: EndpointKey, now: datetime, known: bytes | None
    ) -> PollResult | Unchanged:  # pragma: no cover - every platform source overrides it
        raise NotImplementedError

    def auth_headers(self, token: str) -> dict[str, str]:  # pragma: no cover - overridden
        """The headers that carry `token` (and the content type) on this platform."""
        raise NotImplementedError

    def _headers(self, token: str) -> dict[str, str]:
        """Every header of a request with `token`: built once per token, shared by polls."""
        if token != self._headers_token:
            # The User-Agent is the session's: set once, sent once.
            self._headers_cache = {"Accept": "application/json", **self.auth_headers(token)}
            self._headers_token = token
        return self._headers_cache

    def credentials_version(self) -> int:
        """Changes whenever a new access token is read (a rotated token file)."""
        self._tokens.current()
        return self._tokens.version

    async def _token_for(self, key: EndpointKey, now: datetime) -> str:
        """The token to poll `key` with at `now`, renewed first when it is due (a Shopline
        app's); `PollError` (auth) when there is none."""
        if key not in self.endpoints:
            raise ValueError(f"{key} is not an endpoint of store {self.store}")
        token = await self._tokens.token_at(key, now)
        if not token:
            raise PollError(FailureKind.AUTH, "no access token configured", key=key)
        return token
