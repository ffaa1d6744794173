"""The daemon's two HTTP client sessions: one for polling the platforms, one for deliveries.

Deliveries have their own connections: a slow platform holding every polling connection must
not delay a webhook, nor a slow webhook a poll.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import aiohttp

from bulkwatch.common.useragent import USER_AGENT

__all__ = ["client_sessions"]

POLL_CONNECTIONS = 200


async def client_sessions(
    stack: AsyncExitStack, delivery_concurrency: int
) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
    """(polling session, delivery session), each closed when `stack` closes."""
    headers = {"User-Agent": USER_AGENT}
    polling = await stack.enter_async_context(
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POLL_CONNECTIONS, ttl_dns_cache=300),
            headers=headers,
        )
    )
    delivering = await stack.enter_async_context(
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(delivery_concurrency, 16)), headers=headers
        )
    )
    return polling, delivering
