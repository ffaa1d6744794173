"""The one webhook receiver of the tests: a real aiohttp server on 127.0.0.1.

It records every request, answers with a scripted list of replies (then `default`), or as
`decide` says for a request (a reply per event and notifier, whatever order they arrive in),
and can hold responses on an `asyncio.Event` to simulate a slow receiver. `requests` holds every
request; `accepted` (and `events`, their CloudEvents) only those answered with a 2xx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Received", "Receiver", "Reply", "running_receiver"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int  # what the receiver answered

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def event(self) -> dict[str, Any]:
        """The body, a CloudEvent in JSON."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    """Records requests; replies from `script` first, then `default`."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        # When set, its reply (if not None) comes before `script`: given the request's
        # lower-cased headers and its body.
        self.decide: Callable[[dict[str, str], bytes], Reply | None] | None = None
        # While set to an unset Event, every response waits for it: a slow receiver.
        self.hold: asyncio.Event | None = None
        self._changed = asyncio.Condition()

    @property
    def attempts(self) -> int:
        """Every request, accepted or not."""
        return len(self.requests)

    @property
    def accepted(self) -> list[Received]:
        """The requests answered with a 2xx, in arrival order."""
        return [r for r in self.requests if r.accepted]

    @property
    def events(self) -> list[dict[str, Any]]:
        """The CloudEvents of the accepted requests, in arrival order."""
        return [r.event for r in self.accepted]

    def types(self) -> list[tuple[str, str]]:
        """(type, subject) of every accepted event, in arrival order."""
        return [(e["type"], e["subject"]) for e in self.events]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        decided = None if self.decide is None else self.decide(headers, body)
        if decided is not None:
            reply = decided
        else:
            reply = self.script.pop(0) if self.script else self.default
        received = Received(request.method, request.path, headers, body, reply.status)
        async with self._changed:
            self.requests.append(received)
            self._changed.notify_all()
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=reply.status, headers=reply.headers)

    async def wait_for_requests(self, count: int, within: float = 5.0) -> list[Received]:
        """Wait until `count` requests have arrived (fails the test after `within` seconds)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)
        return self.requests

    async def wait_for(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least `count` events were accepted (fails the test after `within`
        seconds); return the accepted events."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.accepted) >= count)
        return self.events


@asynccontextmanager
async def running_receiver(path: str = "/hook") -> AsyncIterator[Receiver]:
    """Serve a `Receiver` on an ephemeral 127.0.0.1 port; `receiver.url` points at `path`."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post(path, receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()  # let held handlers finish so shutdown is quick
        await runner.cleanup()
