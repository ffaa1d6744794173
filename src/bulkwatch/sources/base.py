"""The source contract: what polls one store's endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bulkwatch.model import EndpointKey, Platform, PollResult, Unchanged

__all__ = ["Source"]


class Source(Protocol):
    """Polls the endpoints of one store.

    `poll_since` returns a `PollResult` or raises `PollError`; it never returns partial data.
    When the responses it reads are byte for byte the ones whose fingerprint is `known`, it
    returns `Unchanged` without parsing them (the unchanged-poll rule, `tracking.quiet`).
    """

    platform: Platform
    store: str
    endpoints: tuple[EndpointKey, ...]

    async def poll_since(
        self, key: EndpointKey, now: datetime, known: bytes | None
    ) -> PollResult | Unchanged: ...

    def credentials_version(self) -> int:
        """A number that changes when the store's access token changes (a rotated file), so
        a store waiting after a rejected token is retried as soon as a new one is in place."""
        ...
