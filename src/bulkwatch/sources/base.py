"""The source contract and the registry of platform sources."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from bulkwatch.model import EndpointKey, Platform, PollResult, Unchanged

if TYPE_CHECKING:
    import aiohttp

    from bulkwatch.config import Settings, ShoplazzaStore, ShoplineStore

__all__ = ["Source", "SourceContext", "make_source", "register"]


class Source(Protocol):
    """Polls the endpoints of one store.

    `poll` returns a `PollResult` or raises `PollError`; it never returns partial data.
    `poll_since` is the same, except that when the responses it reads are byte for byte the
    ones whose fingerprint is `known`, it returns `Unchanged` without parsing them.
    """

    platform: Platform
    store: str
    endpoints: tuple[EndpointKey, ...]

    async def poll(self, key: EndpointKey, now: datetime) -> PollResult: ...

    async def poll_since(
        self, key: EndpointKey, now: datetime, known: bytes | None
    ) -> PollResult | Unchanged: ...

    def credentials_version(self) -> int:
        """A number that changes when the store's access token changes (a rotated file), so
        a store waiting after a rejected token is retried as soon as a new one is in place."""
        ...


@dataclass(frozen=True, slots=True)
class SourceContext:
    session: aiohttp.ClientSession
    settings: Settings


SourceFactory = Callable[["ShoplazzaStore | ShoplineStore", SourceContext], Source]
_FACTORIES: dict[Platform, SourceFactory] = {}


def register(platform: Platform, factory: SourceFactory) -> None:
    _FACTORIES[platform] = factory


def make_source(store: ShoplazzaStore | ShoplineStore, ctx: SourceContext) -> Source:
    """Build the source for one configured store."""
    if Platform(store.platform) not in _FACTORIES:
        from bulkwatch.sources import shoplazza, shopline  # noqa: PLC0415, F401 - registers

    return _FACTORIES[Platform(store.platform)](store, ctx)
