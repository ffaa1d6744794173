"""Building the source of a configured store: one class per platform."""

from __future__ import annotations

import aiohttp

from bulkwatch.config import ResolvedStore, ShoplazzaStore
from bulkwatch.sources.base import Source
from bulkwatch.sources.shoplazza import ShoplazzaSource
from bulkwatch.sources.shopline import ShoplineSource
from bulkwatch.store.base import TokenState

__all__ = ["make_source"]


def make_source(
    store: ResolvedStore, session: aiohttp.ClientSession, tokens: TokenState | None = None
) -> Source:
    """The source that polls `store` over `session` (which the caller owns); `tokens` keeps
    the access tokens it renews (a Shopline store with app credentials)."""
    config = store.config
    if isinstance(config, ShoplazzaStore):
        return ShoplazzaSource(config, store, session)
    return ShoplineSource(config, store, session, tokens=tokens)
