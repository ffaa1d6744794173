"""A scripted stand-in for the Shoplazza and Shopline APIs on 127.0.0.1.

Each request is recorded (path, query, headers) and answered with the next scripted `Reply`;
replies can hold the answer until the test releases them, stall halfway through the body, or
drop the connection mid-response.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # answer nothing until the stub is released
    stall_body: bool = False  # send the headers and half the body, then wait for release
    reset: bool = False  # send the headers and half the body, then drop the connection
    chunked: bool = False  # chunked transfer encoding: no Content-Length to reject early


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A reply whose body is `data` as JSON."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return Reply(status=status, body=json.dumps(data).encode(), headers=hdrs)


@dataclass
class Seen:
    """One request as the stub received it."""

    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]


@dataclass
class PlatformStub:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    # Answered in order; the last one answers every request after it.
    replies: list[Reply] = field(default_factory=lambda: [Reply()])
    # When set, chooses the reply from the request instead (paging).
    respond: Callable[[Seen], Reply] | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.path, dict(request.query), CIMultiDict(request.headers))
        self.seen.append(seen)
        self.arrived.set()
        if self.respond is not None:
            reply = self.respond(seen)
        else:
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if reply.hold:
            await self.released.wait()
        if not (reply.stall_body or reply.reset or reply.chunked):
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        resp = web.StreamResponse(status=reply.status, headers=reply.headers)
        if reply.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(reply.body)
        await resp.prepare(request)
        if reply.chunked:
            for start in range(0, len(reply.body), 512):
                await resp.write(reply.body[start : start + 512])
            await resp.write_eof()
            return resp
        half = len(reply.body) // 2
        await resp.write(reply.body[:half])
        if reply.reset:
            assert request.transport is not None
            request.transport.abort()
            return resp
        await self.released.wait()
        await resp.write(reply.body[half:])
        return resp


@asynccontextmanager
async def run_stub() -> AsyncIterator[PlatformStub]:
    """Serve a `PlatformStub` on 127.0.0.1 on a free port for the duration of the block."""
    stub = PlatformStub()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", stub.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stub.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield stub
    finally:
        stub.released.set()  # let held handlers finish so shutdown does not wait on them
        await runner.cleanup()


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
